"""Reading the workspace's .npy arrays: errors name the file; NaN, truncation and pickles are refused."""

from __future__ import annotations

import numpy as np
import pytest

from braindiff_app.arrays import read_array


def test_a_good_array_is_memory_mapped_and_read_whole_on_request(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "a.npy", values)
    mapped = read_array(tmp_path / "a.npy", finite=True)
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, values)
    whole = read_array(tmp_path / "a.npy", mmap=False)
    assert not isinstance(whole, np.memmap) and np.array_equal(whole, values)


def test_missing_truncated_pickled_and_npz_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"b\.npy: missing; run prepare\.$"):
        read_array(tmp_path / "b.npy", "run prepare")
    np.save(tmp_path / "t.npy", np.zeros((100, 100), np.float32))
    with open(tmp_path / "t.npy", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match=r"t\.npy: not a readable \.npy array .*truncated"):
        read_array(tmp_path / "t.npy")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for mmap in (True, False):  # numpy words it differently with and without a memory map
        with pytest.raises(ValueError, match=r"o\.npy: .*Python objects, which are never loaded"):
            read_array(tmp_path / "o.npy", mmap=mmap)
    np.savez(tmp_path / "z.npy", a=np.zeros(3))  # an archive under a .npy name (savez appends .npz)
    (tmp_path / "z.npy.npz").rename(tmp_path / "z.npy")
    with pytest.raises(ValueError, match=r"z\.npy: expected one \.npy array \(numpy\.save\), got an \.npz"):
        read_array(tmp_path / "z.npy")
    (tmp_path / "t.txt").write_text("V1 please")
    with pytest.raises(ValueError, match=r"t\.txt: expected one \.npy array \(numpy\.save\), got no \.npy header"):
        read_array(tmp_path / "t.txt")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_their_row_across_chunks(tmp_path, monkeypatch, bad):
    import braindiff_app.arrays as arrays

    monkeypatch.setattr(arrays, "_CHUNK_BYTES", 2 * 5 * 4 * 4)  # two rows of (5, 4) float32 per chunk
    values = np.zeros((9, 5, 4), np.float32)
    values[7, 3, 1] = bad
    np.save(tmp_path / "f.npy", values)
    assert read_array(tmp_path / "f.npy").shape == (9, 5, 4)  # unchecked unless asked
    with pytest.raises(ValueError, match=r"f\.npy: row 7 holds NaN or infinite values"):
        read_array(tmp_path / "f.npy", finite=True)
    np.save(tmp_path / "i.npy", np.arange(5))  # integers cannot hold NaN
    assert read_array(tmp_path / "i.npy", finite=True).tolist() == [0, 1, 2, 3, 4]
    np.save(tmp_path / "s.npy", np.float32(bad))  # a 0-d array
    with pytest.raises(ValueError, match=r"s\.npy: row 0 holds NaN"):
        read_array(tmp_path / "s.npy", finite=True)

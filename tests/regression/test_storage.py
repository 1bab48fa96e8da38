"""Regressor files: round trip, memory mapping, standard safetensors, low-rank fidelity, safe pickle import."""

import os
import pickle

import numpy as np
import pytest
from safetensors.numpy import load_file

from braindiff_app.regression import (
    LowRankWeights,
    RidgeRegressor,
    UnsafePickleError,
    import_reference_pickle,
    load_regressor,
    low_rank_fidelity,
    read_reference_pickle,
    save_regressor,
    to_low_rank,
    write_safetensors,
)


def _fitted(m=(3, 5), n=40, p=30, rank=None, seed=0):
    rng = np.random.default_rng(seed)
    fmri = rng.normal(0, 300, (n + 10, p)).astype(np.float32)
    if rank is None:
        B = rng.normal(size=(p, int(np.prod(m))))
    else:  # weights of low rank: features driven by `rank` brain directions
        B = rng.normal(size=(p, rank)) @ rng.normal(size=(rank, int(np.prod(m))))
    Y = ((fmri / 300) @ B + 0.1 * rng.normal(size=(n + 10, B.shape[1]))).astype(np.float32)
    reg = RidgeRegressor(5.0).fit(fmri[:n], Y[:n].reshape(n, *m))
    return reg, fmri[n:]


def test_round_trip_is_memory_mapped_and_standard(tmp_path):
    reg, test = _fitted()
    path = tmp_path / "r.safetensors"
    save_regressor(reg, path, metadata={"features": "clip_vision"})
    loaded = load_regressor(path)
    assert isinstance(loaded.weights_, np.memmap)
    assert loaded.target_shape_ == (3, 5) and loaded.metadata["features"] == "clip_vision"
    for mode in ("none", "transductive", "train", "norm"):
        np.testing.assert_array_equal(loaded.predict(test, rescale=mode), reg.predict(test, rescale=mode))
    official = load_file(path)  # the safetensors library reads our streamed file
    np.testing.assert_array_equal(official["weights"], reg.weights_)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert os.stat(path).st_mode & 0o777 == 0o644  # readable by the app's user like every other file, not 0600


def test_a_killed_regressor_writer_leaves_nothing_a_rerun_keeps(tmp_path):
    reg, _ = _fitted()
    path = tmp_path / "r.safetensors"
    killed = tmp_path / ".r.safetensors.999999999_abcdefgh.tmp.safetensors"  # its pid is gone
    older = tmp_path / ".r.safetensors.k2j4h5g6.tmp"  # an older braindiff's name (issue 16: 195 MB on the demo)
    for left in (killed, older):
        left.write_bytes(b"x" * 1000)
    os.utime(older, (1, 1))
    save_regressor(reg, path)
    assert sorted(os.listdir(tmp_path)) == ["r.safetensors"]


def test_streamed_writer_slices(tmp_path):
    a = np.arange(1000, dtype=np.float32).reshape(100, 10)
    write_safetensors(tmp_path / "a.safetensors", {"a": a, "b": np.zeros((0, 3))}, slice_bytes=48)
    loaded = load_file(tmp_path / "a.safetensors")
    np.testing.assert_array_equal(loaded["a"], a)
    assert loaded["b"].shape == (0, 3)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="braindiff fit"):
        load_regressor(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_regressor(tmp_path / "junk.safetensors")
    write_safetensors(tmp_path / "other.safetensors", {"x": np.zeros(2, np.float32)}, {"format": "other"})
    with pytest.raises(ValueError, match="not a braindiff regressor"):
        load_regressor(tmp_path / "other.safetensors")
    reg, _ = _fitted()
    save_regressor(reg, tmp_path / "r.safetensors")
    data = (tmp_path / "r.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="truncated or damaged"):
        load_regressor(tmp_path / "cut.safetensors")
    with pytest.raises(ValueError, match="not fitted"):
        save_regressor(RidgeRegressor(1.0), tmp_path / "x.safetensors")


def test_low_rank_fidelity(tmp_path):
    reg, test = _fitted(m=(4, 25), p=60, rank=5)
    fid = {r: low_rank_fidelity(reg, to_low_rank(reg, r), test) for r in (1, 5, 20)}
    assert fid[1]["relative_error"] > fid[5]["relative_error"] > fid[20]["relative_error"]
    assert fid[20]["relative_error"] < 0.05 and fid[20]["mean_correlation"] > 0.99
    low = to_low_rank(reg, 20)
    assert isinstance(low.weights_, LowRankWeights) and low.weights_.left.shape == (60, 20)
    save_regressor(low, tmp_path / "low.safetensors")
    loaded = load_regressor(tmp_path / "low.safetensors")
    np.testing.assert_array_equal(loaded.predict(test), low.predict(test))
    save_regressor(to_low_rank(reg, 5), tmp_path / "low5.safetensors")
    save_regressor(reg, tmp_path / "dense.safetensors")
    assert (tmp_path / "low5.safetensors").stat().st_size < 0.5 * (tmp_path / "dense.safetensors").stat().st_size
    with pytest.raises(ValueError, match="rank: expected 1 <= rank <= 60"):
        to_low_rank(reg, 61)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_reference_pickle_import(tmp_path):
    reg, test = _fitted(m=(3, 5))
    ref = {"weight": (reg.weights_.T.reshape(3, 5, -1)).astype(np.float64), "bias": reg.intercept_.reshape(3, 5)}
    for protocol in (2, 4, 5):
        (tmp_path / "ref.pkl").write_bytes(pickle.dumps(ref, protocol=protocol))
        assert read_reference_pickle(tmp_path / "ref.pkl")["weight"].shape == (3, 5, 30)
    rng = np.random.default_rng(0)
    train = rng.normal(0, 300, (40, 30)).astype(np.float32)  # the same rows _fitted used
    imported = import_reference_pickle(tmp_path / "ref.pkl", train)
    np.testing.assert_allclose(imported.predict(test), reg.predict(test), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"train_fmri: expected shape \(n_trials, 30\)"):
        import_reference_pickle(tmp_path / "ref.pkl", train[:, :5])


@pytest.mark.parametrize("payload, match", [
    ({"weight": _RunsCode(), "bias": np.zeros(2)}, "refuses to load posix.system"),
    ({"weight": np.array([object()], dtype=object), "bias": np.zeros(2)}, "refuses to load builtins.object"),
    ({"weight": np.zeros(2)}, "expected a dict with keys 'weight' and 'bias'"),
    ({"weight": np.array(["a"]), "bias": np.zeros(2)}, "must be a numeric numpy array"),
])
def test_reference_pickle_rejects_code_and_non_arrays(tmp_path, payload, match):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match=match) as info:
        read_reference_pickle(path)
    if "refuses" in match:
        assert info.type is UnsafePickleError

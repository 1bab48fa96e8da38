"""Atomic writes: temporary files left by a killed writer are removed at the next write; live ones are kept."""

from __future__ import annotations

import fcntl
import os

from braindiff_app.atomic import atomic_path, atomic_write_bytes, remove_stale_temporaries


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "vdvae.safetensors"
    stale = tmp_path / ".vdvae.safetensors.k1ll3d_x.tmp.safetensors"
    stale.write_bytes(b"half a regressor")
    other = tmp_path / ".clip_text.safetensors.abcdefgh.tmp.safetensors"  # another file's: not this write's
    other.write_bytes(b"x")
    unrelated = tmp_path / "vdvae.safetensors.tmp"
    unrelated.write_bytes(b"y")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and not stale.exists() and other.exists() and unrelated.exists()


def test_a_temporary_file_held_by_a_live_writer_is_kept(tmp_path):
    target = tmp_path / "a.json"
    live = tmp_path / ".a.json.abc_1234.tmp.json"
    live.write_bytes(b"being written")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as atomic_path holds its own temporary file
        assert remove_stale_temporaries(target) == []
        assert live.exists()
    finally:
        os.close(fd)
    assert remove_stale_temporaries(target) == [live] and not live.exists()


def test_own_temporary_file_survives_a_nested_cleanup(tmp_path):
    target = tmp_path / "b.npy"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
        assert remove_stale_temporaries(target) == []  # another write of the same file in this process
    assert target.read_bytes() == b"data" and not tmp.exists()

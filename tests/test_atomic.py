"""Atomic writes: temporary files left by a killed writer are removed at the next write; live ones are kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from braindiff_app.atomic import STALE_AFTER_S, atomic_path, atomic_write_bytes, remove_stale_temporaries


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "vdvae.safetensors"
    killed = tmp_path / f".vdvae.safetensors.{_dead_pid()}_k1ll3d_x.tmp.safetensors"
    legacy = tmp_path / ".vdvae.safetensors.k1ll3d_x.tmp.safetensors"  # names no process: stale when old
    for path in (killed, legacy):
        path.write_bytes(b"half a regressor")
    old = time.time() - STALE_AFTER_S - 10
    os.utime(legacy, (old, old))
    other = tmp_path / ".clip_text.safetensors.abcdefgh.tmp.safetensors"  # another file's: not this write's
    unrelated = tmp_path / "vdvae.safetensors.tmp"
    for path in (other, unrelated):
        path.write_bytes(b"x")
        os.utime(path, (old, old))
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert not killed.exists() and not legacy.exists() and other.exists() and unrelated.exists()


def test_temporary_files_of_live_writers_are_kept(tmp_path):
    target = tmp_path / "a.json"
    helper = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    try:
        live = tmp_path / f".a.json.{helper.pid}_abcdefgh.tmp.json"
        fresh = tmp_path / ".a.json.abcdefgh.tmp.json"  # names no process, but recent
        for path in (live, fresh):
            path.write_bytes(b"being written")
        assert remove_stale_temporaries(target) == []
    finally:
        helper.communicate(b"\n", timeout=30)
    assert remove_stale_temporaries(target) == [live]


def test_own_temporary_file_survives_a_nested_cleanup(tmp_path):
    target = tmp_path / "b.npy"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
        assert remove_stale_temporaries(target) == []  # another write of the same file in this process
        leftover = tmp.with_name(tmp.name.replace(tmp.name.split(".")[3], f"{os.getpid()}_zzzzzzzz"))
        leftover.write_bytes(b"left by an earlier failed write of this process")
    assert target.read_bytes() == b"data" and not tmp.exists()
    assert remove_stale_temporaries(target) == [leftover]

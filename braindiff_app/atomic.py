"""Atomic file writes: every file braindiff writes appears complete or not at all.

Each writer fills a hidden temporary file beside its destination (``.<name>.<pid>_<random>.tmp<suffixes>``, so a reader
never mistakes it for the result and tools that choose a format by suffix still see it) and renames it over the
destination only when complete; any error removes the temporary file. Folders are written the same way
(:func:`atomic_folder`). This is the one home of that rule: modules call these functions rather than renaming
files themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_folder",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_save_npy",
    "atomic_save_npz",
    "read_json_mark",
    "remove_stale_temporaries",
]

#: Permissions of written files (``mkstemp`` makes files private; results are ordinary files).
FILE_MODE = 0o644


#: Temporary files this process is writing now (others with this process's id are stale).
_LIVE: set[str] = set()
#: Age after which a temporary file that names no writer is taken as stale, in seconds.
STALE_AFTER_S = 600


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block ends without an error.

    The temporary file is ``.<name>.<pid>_<random>.tmp<suffixes>``. Temporary files of ``path`` left by a writer
    that was killed are removed first (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    path : path
        Destination file; its folder is created if needed.

    Yields
    ------
    Path
        An empty temporary file in the same folder (same suffixes), for the caller to fill. On an error it is
        removed and the destination is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}_",
                               suffix=".tmp" + "".join(path.suffixes))
    os.close(fd)
    _LIVE.add(tmp)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        _LIVE.discard(tmp)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep the file
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` (``.<name>.<pid>_<random>.tmp<suffixes>``) left by killed writers.

    A writer killed mid-write (``kill -9``) leaves its temporary file behind; the next write of the same file
    removes it. A file is stale when the process named in it is gone (or is this one, which is not writing it);
    a file that names no process (written by an older braindiff, ``.<name>.<random>.tmp``) when it is older than
    ``STALE_AFTER_S``.

    Returns
    -------
    list of Path
        The files removed.
    """
    import re
    import time

    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)_)?([A-Za-z0-9_]+)\.tmp"  # older writers: no suffixes
                         rf"(?:{re.escape(''.join(path.suffixes))})?")
    removed = []
    try:
        candidates = [(p, pattern.fullmatch(p.name)) for p in path.parent.iterdir()]
    except OSError:
        return removed
    for candidate, match in candidates:
        if match is None or str(candidate) in _LIVE:
            continue
        try:
            if match.group(1) is not None and len(match.group(2)) >= 8:
                stale = int(match.group(1)) == os.getpid() or not _alive(int(match.group(1)))
            else:
                stale = time.time() - candidate.stat().st_mtime > STALE_AFTER_S
            if stale and candidate.is_file():
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder``; it replaces ``folder`` when the block ends without an error.

    An existing ``folder`` is removed only after the new one is complete. On an error the temporary folder is
    removed and ``folder`` is left as it was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        yield tmp
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (UTF-8), atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def read_json_mark(path: str | os.PathLike) -> dict | None:
    """A resumable command's own JSON mark (written by :func:`atomic_write_json`: prepare's meta.json, extract's
    vdvae.json / clip.json); None when missing or damaged, so the command redoes that part instead of failing on
    it with a bare JSON error (its rerun, which should repair it, included)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` (no pickles), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)


def atomic_save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], compressed: bool = True) -> None:
    """Save named arrays as ``.npz`` (no pickles), compressed by default, atomically."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        save(fh, **{name: np.asarray(a) for name, a in arrays.items()})

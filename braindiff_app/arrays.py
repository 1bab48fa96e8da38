"""Reading the workspace's ``.npy`` arrays safely: no pickles, errors that name the file, NaN and inf refused.

A truncated file (an interrupted copy), a pickled object array or a NaN that slipped into a feature file otherwise
surfaces far from its cause: numpy's "mmap length is greater than file size" with no path, or a regressor fitted to
NaN that only fails when it is used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["read_array"]

#: Rows checked for NaN / inf at a time (a memory-mapped 7 GB feature file is never read whole into RAM).
_CHUNK_BYTES = 256 * 2**20


def read_array(path: str | os.PathLike, hint: str = "", *, finite: bool = False, mmap: bool = True) -> np.ndarray:
    """Open ``path`` (a ``.npy`` file), memory-mapped; errors name the file.

    Parameters
    ----------
    path : path-like
        The ``.npy`` file.
    hint : str, optional
        What to do when the file is missing (e.g. ``"prepare the subject first (`braindiff prepare`)"``).
    finite : bool, default False
        Also refuse a floating-point array holding NaN or inf (checked in chunks of rows), naming the first bad row.
    mmap : bool, default True
        Memory-map the file (read-only) instead of loading it.

    Returns
    -------
    numpy.ndarray
        The array (a read-only ``numpy.memmap`` when ``mmap``).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not a readable ``.npy`` array (truncated, pickled, another format), or holds NaN / inf.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing" + (f"; {hint}." if hint else "."))
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        kind = "an .npz (zip) archive" if magic.startswith(b"PK") else "no .npy header"
        raise ValueError(f"{path}: expected one .npy array (numpy.save), got {kind}.")
    try:
        values = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        objects = "pickle" in str(exc) or "Python objects" in str(exc)
        reason = "it holds Python objects, which are never loaded" if objects else str(exc)
        raise ValueError(f"{path}: not a readable .npy array ({reason}); the file is damaged or truncated, "
                         "write it again.") from None
    if finite and values.dtype.kind in "fc" and values.size:
        rows = values.reshape(1, -1) if values.ndim == 0 else values
        chunk = max(1, _CHUNK_BYTES // max(1, rows[:1].nbytes))
        for start in range(0, len(rows), chunk):
            block = np.asarray(rows[start:start + chunk])
            ok = np.isfinite(block).reshape(len(block), -1).all(axis=1)
            if not ok.all():
                row = start + int(np.argmin(ok))
                raise ValueError(f"{path}: row {row} holds NaN or infinite values (expected finite numbers); "
                                 "the file is damaged, write it again.")
    return values

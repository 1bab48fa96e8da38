"""Regressor files: safetensors, written in streamed slices and memory-mapped on load.

A file holds one fitted :class:`~braindiff_app.regression.ridge.RidgeRegressor`::

    fmri_mean, fmri_scale              (n_voxels,)           float64  preprocessing
    weights                            (n_voxels, n_targets) float32  dense form, or
    weights_left, weights_right        (n_voxels, r), (r, n_targets)  low-rank form
    intercept, target_mean, target_std, pred_mean, pred_std   (n_targets,) float32
    alpha                              (n_targets,)          float64
    pred_norm                          (n_groups,)           float32
    __metadata__: format, version, target_shape, fmri_divisor, plus the caller's strings

The file is standard safetensors (``safetensors.numpy.load_file`` reads it). Our writer streams each tensor in
row slices (a 12 GB CLIP-vision weight matrix is never copied into one bytes object) and our reader maps the file
with ``numpy.memmap``: loading costs the header only; pages are read when a prediction touches them.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from braindiff_app.atomic import atomic_path
from braindiff_app.regression.ridge import FMRI_DIVISOR, LowRankWeights, RidgeRegressor

__all__ = ["REGRESSOR_FORMAT", "save_regressor", "load_regressor", "write_safetensors", "read_safetensors",
           "check_file_format"]

REGRESSOR_FORMAT = "braindiff-ridge"
REGRESSOR_VERSION = "1"
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "U8": np.uint8}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
#: Largest header accepted (the safetensors format's own limit).
MAX_HEADER_BYTES = 100_000_000
_STATS = ("intercept", "target_mean", "target_std", "pred_mean", "pred_std", "pred_norm", "alpha")


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None, slice_bytes: int = 64 << 20) -> None:
    """Write arrays as a safetensors file, streaming each in row slices, through a temporary file.

    Parameters
    ----------
    path : path
        Destination (replaced atomically).
    tensors : mapping of str to array
        Arrays of the dtypes in ``_DTYPES`` (may be memory-mapped).
    metadata : mapping of str to str, optional
    slice_bytes : int, default 64 MiB
        Bytes per write.
    """
    path = Path(path)
    header: dict = {"__metadata__": dict(metadata or {})}
    offset = 0
    for name, array in tensors.items():
        dtype = np.dtype(array.dtype)
        if dtype not in _CODES:
            raise TypeError(f"{name}: dtype {dtype} cannot be stored; expected one of {sorted(map(str, _CODES))}.")
        nbytes = int(np.prod(array.shape)) * dtype.itemsize
        header[name] = {"dtype": _CODES[dtype], "shape": list(array.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)) + blob)
        for array in (a for a in tensors.values() if a.size):
            rows = array.reshape(array.shape[0], -1) if array.ndim >= 2 else array.reshape(1, -1)
            step = max(1, slice_bytes // max(1, rows[:1].nbytes))
            for start in range(0, rows.shape[0], step):
                fh.write(np.ascontiguousarray(rows[start:start + step], rows.dtype.newbyteorder("<")).tobytes())


def check_file_format(path: str | os.PathLike, metadata: dict[str, str], fmt: str, version: str, what: str,
                      fix: str) -> None:
    """ValueError naming ``path`` unless its safetensors header says ``format`` ``fmt`` at ``version``.

    ``what`` names the kind of file ("regressor", "encoder"); ``fix`` says what to do (e.g. "refit it with ...").
    """
    if metadata.get("format") != fmt:
        raise ValueError(f"{path}: not a braindiff {what} (format {metadata.get('format')!r}); {fix}.")
    if metadata.get("version") != version:
        raise ValueError(f"{path}: {what} format version {metadata.get('version')!r}, expected {version!r}; {fix}.")


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Memory-map every tensor of a safetensors file (read-only).

    Returns
    -------
    tensors : dict of str to numpy.memmap
    metadata : dict of str to str
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such regressor file; fit it with `braindiff fit`.")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
        if not 0 < n <= min(size - 8, MAX_HEADER_BYTES):
            raise ValueError(f"{path}: not a safetensors file (header length {n}, file of {size} bytes); the file "
                             "is damaged or truncated, refit it.")
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
        except (ValueError, RecursionError):
            raise ValueError(f"{path}: not a safetensors file (header is not JSON).") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (header is {type(header).__name__}, not an object).")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ValueError(f"{path}: __metadata__: expected an object of strings; the file is damaged, refit it.")
    spans = sorted((_check_entry(path, name, info) + (name,) for name, info in header.items()),
                   key=lambda span: (span[0], span[1]))
    data_size, end_before, previous = size - 8 - n, 0, None
    for begin, end, name in spans:
        if begin != end_before:  # spans must tile the data buffer: no gap, no overlap
            what = (f"overlaps tensor {previous!r}" if begin < end_before
                    else f"leaves a gap of {begin - end_before} bytes after {previous or 'the header'}")
            raise ValueError(f"{path}: tensor {name!r} (data_offsets [{begin}, {end}]) {what}; the file is "
                             "damaged, refit it.")
        end_before, previous = end, name
    if end_before != data_size:
        raise ValueError(f"{path}: tensors cover {end_before} bytes of data, the file holds {data_size} "
                         "(truncated or damaged); refit it.")
    tensors = {}
    for name, info in header.items():
        dtype, shape = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<"), tuple(info["shape"])
        begin, end = info["data_offsets"]
        if end == begin:
            tensors[name] = np.empty(shape, dtype=dtype)
        else:
            tensors[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin, shape=shape)
    return tensors, metadata


def _check_entry(path: Path, name: str, info) -> tuple[int, int]:
    """One header entry's data span, after checking its dtype, shape and offsets agree."""
    if not isinstance(info, dict):
        raise ValueError(f"{path}: tensor {name!r}: expected an object with dtype, shape and data_offsets, got "
                         f"{type(info).__name__}; the file is damaged, refit it.")
    if info.get("dtype") not in _DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')!r}; expected one of "
                         f"{sorted(_DTYPES)}.")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise ValueError(f"{path}: tensor {name!r}: shape {shape!r} is not a list of non-negative integers; the "
                         "file is damaged, refit it.")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise ValueError(f"{path}: tensor {name!r}: data_offsets {offsets!r} are not [begin, end] with "
                         "0 <= begin <= end; the file is damaged, refit it.")
    nbytes = int(np.prod(shape, dtype=object)) * np.dtype(_DTYPES[info["dtype"]]).itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise ValueError(f"{path}: tensor {name!r}: {offsets[1] - offsets[0]} bytes for {info['dtype']} of shape "
                         f"{tuple(shape)} ({nbytes} bytes expected); the file is damaged, refit it.")
    return offsets[0], offsets[1]


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def save_regressor(reg: RidgeRegressor, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Save a fitted regressor (dense or low-rank) as safetensors.

    Parameters
    ----------
    reg : RidgeRegressor
        Fitted (or loaded).
    path : path
        Destination ``.safetensors`` file.
    metadata : mapping of str to str, optional
        Extra provenance (features used, subject, ...), stored in the header.
    """
    if not isinstance(reg, RidgeRegressor):
        raise TypeError(f"reg: expected a RidgeRegressor, got {type(reg).__name__}.")
    if not reg.is_fitted:
        raise ValueError("reg: not fitted; call fit() before save_regressor().")
    tensors: dict[str, np.ndarray] = {"fmri_mean": np.asarray(reg.fmri_mean_, np.float64),
                                      "fmri_scale": np.asarray(reg.fmri_scale_, np.float64)}
    if isinstance(reg.weights_, LowRankWeights):
        tensors["weights_left"], tensors["weights_right"] = reg.weights_.left, reg.weights_.right
    else:
        tensors["weights"] = reg.weights_
    for name in _STATS:
        tensors[name] = getattr(reg, f"{name}_")
    meta = {**dict(metadata or {}), "format": REGRESSOR_FORMAT, "version": REGRESSOR_VERSION,
            "target_shape": json.dumps(list(reg.target_shape_)), "fmri_divisor": repr(FMRI_DIVISOR)}
    write_safetensors(path, tensors, meta)


def load_regressor(path: str | os.PathLike, **options) -> RidgeRegressor:
    """Load a regressor written by :func:`save_regressor`, weights memory-mapped (instant, any size).

    Parameters
    ----------
    path : path
        A ``.safetensors`` regressor file.
    **options
        RidgeRegressor options for predicting (``n_targets_batch``, ``backend``, ``device``).

    Returns
    -------
    RidgeRegressor
        Fitted; ``metadata`` holds the header's strings.
    """
    tensors, metadata = read_safetensors(path)
    check_file_format(path, metadata, REGRESSOR_FORMAT, REGRESSOR_VERSION, "regressor",
                      "fit it with `braindiff fit` (reference pickles: import_reference_pickle())")
    names = {"fmri_mean", "fmri_scale", *_STATS}
    missing = sorted(names - set(tensors)) + ([] if "weights" in tensors or "weights_left" in tensors
                                               else ["weights"])
    if missing:
        raise ValueError(f"{path}: missing tensor(s) {', '.join(missing)}; the file is damaged, refit it.")
    reg = RidgeRegressor(alpha=float(tensors["alpha"][0]) if len(tensors["alpha"]) else 1.0, **options)
    reg.fmri_mean_, reg.fmri_scale_ = np.asarray(tensors["fmri_mean"]), np.asarray(tensors["fmri_scale"])
    if "weights" in tensors:
        reg.weights_ = tensors["weights"]
    else:
        reg.weights_ = LowRankWeights(tensors["weights_left"], tensors["weights_right"])
    for name in _STATS:
        setattr(reg, f"{name}_", np.asarray(tensors[name]))
    reg.target_shape_ = tuple(json.loads(metadata["target_shape"]))
    reg.metadata = metadata
    _check_loaded(reg, path)
    return reg


#: Weights up to this many values are checked for NaN/inf when loaded (read in chunks); larger ones (the real
#: tier's CLIP-vision, 3 billion) are memory-mapped unread, and the pipeline checks their predictions instead.
_MAX_CHECKED_WEIGHTS = 2**27


def _check_loaded(reg: RidgeRegressor, path: str | os.PathLike) -> None:
    """ValueError naming the file when a loaded regressor has non-finite statistics or weights, or zero scales."""
    def finite(values: np.ndarray, name: str) -> None:
        values = np.asarray(values)
        for start in range(0, max(len(values), 1), 4096):  # rows in chunks: memory-mapped weights stay on disk
            if not np.isfinite(values[start:start + 4096]).all():
                raise ValueError(f"{path}: tensor {name} holds NaN or infinite values; the file is damaged, refit "
                                 "it (`braindiff fit --overwrite`).")

    for name in ("fmri_mean", "fmri_scale", *_STATS):
        finite(getattr(reg, f"{name}_"), name)
    if np.any(np.asarray(reg.fmri_scale_) <= 0):
        raise ValueError(f"{path}: tensor fmri_scale has zero or negative entries (voxels that never vary in "
                         "training would be divided by zero); the file is damaged, refit it.")
    weights = ((("weights_left", reg.weights_.left), ("weights_right", reg.weights_.right))
               if isinstance(reg.weights_, LowRankWeights) else (("weights", reg.weights_),))
    for name, values in weights:
        if np.size(values) <= _MAX_CHECKED_WEIGHTS:
            finite(values, name)

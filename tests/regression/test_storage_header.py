"""Safetensors headers are checked before any tensor is mapped: offsets, sizes, dtypes and header length."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from braindiff_app.regression import write_safetensors
from braindiff_app.regression.storage import read_safetensors


def _file(tmp_path, edit=None, data_extra=b"", header_len=None):
    path = tmp_path / "r.safetensors"
    write_safetensors(path, {"a": np.arange(4, dtype=np.float32), "b": np.ones((2, 3), np.float64)}, {"k": "v"})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    if edit:
        edit(header)
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if header_len is None else header_len) + blob + data + data_extra)
    return path


def _set(name, key, value):
    return lambda header: header[name].__setitem__(key, value)


CORRUPT = {
    "negative offset": (_set("a", "data_offsets", [-16, 0]), "tensor 'a': data_offsets"),
    "overlapping": (_set("b", "data_offsets", [8, 56]), "tensor 'b' .*overlaps tensor 'a'"),
    "reinterpreted dtype": (_set("a", "dtype", "F64"), r"tensor 'a': 16 bytes for F64 of shape \(4,\)"),
    "reinterpreted shape": (_set("b", "shape", [3, 3]), r"tensor 'b': 48 bytes for F64 of shape \(3, 3\)"),
    "unknown dtype": (_set("a", "dtype", "BF16"), "tensor 'a' has unsupported dtype 'BF16'"),
    "shape not integers": (_set("a", "shape", ["4"]), "tensor 'a': shape"),
    "entry not an object": (lambda h: h.__setitem__("a", [1, 2]), "tensor 'a': expected an object"),
    "gap": (lambda h: (_set("a", "data_offsets", [8, 24])(h), _set("b", "data_offsets", [24, 72])(h)),
            "tensor 'a' .*leaves a gap of 8 bytes"),
    "metadata not strings": (lambda h: h.__setitem__("__metadata__", {"k": 1}), "__metadata__: expected"),
    "empty header": (lambda h: h.clear(), None),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_headers_are_named(tmp_path, case):
    edit, message = CORRUPT[case]
    path = _file(tmp_path, edit)
    if message is None:  # an empty header: no tensor, but data: does not tile
        message = "tensors cover 0 bytes of data"
    with pytest.raises(ValueError, match=f"r.safetensors: {message}"):
        read_safetensors(path)


def test_trailing_bytes_and_bad_header_length(tmp_path):
    with pytest.raises(ValueError, match="tensors cover 64 bytes of data, the file holds 65"):
        read_safetensors(_file(tmp_path, data_extra=b"x"))
    with pytest.raises(ValueError, match="header length 18446744073709551615"):
        read_safetensors(_file(tmp_path, header_len=2**64 - 1))
    path = tmp_path / "deep.safetensors"
    blob = b"[" * 5000 + b"]" * 5000
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)
    with pytest.raises(ValueError, match="deep.safetensors: not a safetensors file"):
        read_safetensors(path)


def test_valid_file_still_reads(tmp_path):
    tensors, meta = read_safetensors(_file(tmp_path))
    assert meta == {"k": "v"} and tensors["b"].shape == (2, 3) and float(tensors["a"][3]) == 3.0

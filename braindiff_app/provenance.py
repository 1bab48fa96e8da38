"""Provenance: what made a result (model files and their content fingerprints, library versions).

Bundle manifests and feature files record it, so a result made by other weights, other regressors or another
library version is never taken as up to date. This is the one home of fingerprints and version records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from braindiff_app.config import PACKAGE_DIR, Settings

__all__ = ["files_fingerprint", "model_identities", "package_version"]


def package_version(package: str) -> str | None:
    """Installed version of a distribution (e.g. ``"torch"``), None when it is not installed."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


# Files up to this size are hashed whole; larger ones (real-tier regressors: GBs) by their size, first and last MB.
_WHOLE_HASH_BYTES = 64 * 2**20
_SAMPLE_BYTES = 8 * 2**20
_fingerprints: dict[tuple, str] = {}


def files_fingerprint(path: str | Path | None) -> str | None:
    """A short content fingerprint of a model file or folder (None when it does not exist).

    sha256 over every file under ``path`` (sorted relative names, sizes and contents; files over 64 MB contribute
    their first and last 8 MB), so retrained weights at the same path are told apart. Cached per process by the
    path, inode, size and modification time of each file.

    Returns
    -------
    str or None
        16 hex digits.
    """
    if path is None or not Path(path).exists():
        return None
    root = Path(path)
    files = [(p, p.stat()) for p in sorted(root.rglob("*") if root.is_dir() else [root]) if p.is_file()]
    key = tuple((str(p), st.st_ino, st.st_size, st.st_mtime_ns) for p, st in files)
    if key not in _fingerprints:
        digest = hashlib.sha256()
        for file, st in files:
            size = st.st_size
            name = file.relative_to(root).as_posix() if root.is_dir() else file.name
            digest.update(f"{name}\0{size}\0".encode())
            with open(file, "rb") as handle:
                if size <= _WHOLE_HASH_BYTES:
                    digest.update(handle.read())
                else:
                    digest.update(handle.read(_SAMPLE_BYTES))
                    handle.seek(size - _SAMPLE_BYTES)
                    digest.update(handle.read(_SAMPLE_BYTES))
        _fingerprints[key] = digest.hexdigest()[:16]
    return _fingerprints[key]


def model_identities(settings: Settings, subjects: Sequence[int | str] = ()) -> dict[str, Any]:
    """What made a result: model files with their content fingerprints, the subjects' regressors' fingerprints and
    library versions (stored in bundle manifests, so a bundle made by other weights is never taken as up to date).

    Parameters
    ----------
    settings : Settings
    subjects : sequence of int or str, default ()
        Subjects whose regressors made the result (every subject of a subject average).
    """
    def _where(path) -> str | None:
        """Files inside the package (the committed demo models) by their path in it, others absolute."""
        if path is None:
            return None
        path = Path(path).resolve()
        return path.relative_to(PACKAGE_DIR).as_posix() if path.is_relative_to(PACKAGE_DIR) else str(path)

    vdvae, vd = settings.vdvae_path, settings.vd_path
    return {"tier": settings.tier, "vdvae": _where(vdvae), "versatile_diffusion": _where(vd),
            "fingerprints": {"vdvae": files_fingerprint(vdvae), "versatile_diffusion": files_fingerprint(vd),
                             **{f"regressors subj{int(s):02d}": files_fingerprint(settings.subject_dir(
                                 "regressors", s)) for s in subjects}},
            **{p: package_version(p) for p in ("torch", "diffusers", "transformers")}}

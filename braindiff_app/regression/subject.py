"""Fit a subject's three regressors from prepared betas and extracted features."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from braindiff_app.arrays import read_array
from braindiff_app.regression.lowrank import check_rank, low_rank_fidelity, to_low_rank
from braindiff_app.regression.ridge import RidgeRegressor
from braindiff_app.regression.storage import load_regressor, save_regressor
from braindiff_app.regression.workspace import FEATURE_NAMES

__all__ = ["TARGETS", "DEFAULT_ALPHAS", "PAPER_TRAIN_IMAGES", "fit_subject", "tier_alphas"]

# Regressor name (FEATURE_NAMES, in order) -> (features file stem, features metadata file, command that extracts them).
TARGETS = dict(zip(FEATURE_NAMES, (
    ("vdvae", "vdvae.json", "braindiff extract vdvae"),
    ("clip_vision", "clip.json", "braindiff extract clip"),
    ("clip_text", "clip.json", "braindiff extract clip"),
), strict=True))
DEFAULT_ALPHAS = dict(zip(FEATURE_NAMES, (50000.0, 60000.0, 100000.0), strict=True))
#: NSD subject 1's training images, for which the paper chose :data:`DEFAULT_ALPHAS`.
PAPER_TRAIN_IMAGES = 8859


def tier_alphas(tier: str, n_train: int) -> dict[str, float]:
    """The ridge alphas ``braindiff fit`` uses by default on a tier.

    Real tier: the paper's (:data:`DEFAULT_ALPHAS`). Demo tier: the paper's scaled by ``n_train`` / 8859, so each
    training image carries the penalty it carries in the paper (a ridge's data term grows with the number of
    training images; the simulated subjects have 1500). Measured on subject 1 with ``bench/legibility.py``
    (docs/legibility.md): the demo's final 4-way identification rose from 62.7% with the paper's alphas to 69.3%.
    """
    if tier != "demo":
        return dict(DEFAULT_ALPHAS)
    return {name: float(f"{alpha * n_train / PAPER_TRAIN_IMAGES:.4g}") for name, alpha in DEFAULT_ALPHAS.items()}


def _load(path: Path, hint: str) -> np.ndarray:
    return read_array(path, hint, finite=True)  # a NaN in the inputs would fit (and save) an all-NaN regressor


def _check_free_space(folder: Path, weight_bytes: int, name: str) -> None:
    """OSError naming the folder and the sizes unless it has room for the scratch weights and the saved file.

    A memory-mapped scratch file on a full disk fails with SIGBUS ("Bus error"), killing the process without a
    message, so the room is checked before it is made.
    """
    needed = 2 * weight_bytes + 2**20  # the scratch file and the saved regressor exist together while saving
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(f"{folder}: fitting {name} needs {needed / 2**30:.2f} GiB free (the weights, "
                      f"{weight_bytes / 2**30:.2f} GiB, twice: scratch and saved file), only {free / 2**30:.2f} GiB "
                      "is free; free some space or choose another --home.")


def _saved_alpha(path: Path) -> float | None:
    """The alpha recorded in a saved regressor (None when it records none or cannot be read: refit it)."""
    try:
        return float(load_regressor(path).metadata["alpha"])  # weights memory-mapped: the header is all it reads
    except Exception:  # noqa: BLE001 - no alpha, another format, a damaged file (safetensors' own errors)
        return None


def fit_subject(prepared_dir: str | os.PathLike, features_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                alphas: Mapping[str, float] | None = None, tier: str = "real",
                targets: tuple[str, ...] = tuple(TARGETS), low_rank: int | None = None, overwrite: bool = False,
                log: Callable[[str], None] | None = None,
                **ridge_options: Any) -> dict[str, dict[str, Any]]:
    """Fit and save ``<target>.safetensors`` for each target; skip those already saved with the same alpha
    (resumable; a file fitted with another alpha is refitted, so a changed alpha never reuses stale weights).

    Parameters
    ----------
    prepared_dir : path
        Holds ``fmri_train.npy`` (and ``fmri_test.npy`` for the low-rank fidelity).
    features_dir : path
        Holds ``<target>_train.npy`` (memory-mapped, read in target batches).
    out_dir : path
        Destination of the regressor files.
    alphas : mapping of str to float, optional
        Per target; the others take the tier's (:func:`tier_alphas` of the training trials: on the real tier the
        paper's VDVAE 50000, CLIP-vision 60000, CLIP-text 100000).
    tier : str, default "real"
        Whose default alphas the targets not in ``alphas`` take ("demo" scales the paper's to the training trials).
    targets : tuple of str, default all three
    low_rank : int, optional
        Save the rank-``low_rank`` form instead of the dense weights (fidelity on the test betas is reported).
    overwrite : bool, default False
        Refit targets whose file exists.
    log : callable, optional
        Receives one line per finished target.
    **ridge_options
        Passed to :class:`RidgeRegressor` (``n_targets_batch``, ``backend``, ``device``, ``n_stats_rows``,
        ``progress``).

    Returns
    -------
    dict
        Per target: ``{"path", "status" ("fitted" or "exists"), "alpha", "shape"[, fidelity]}``.
    """
    prepared_dir, features_dir, out_dir = Path(prepared_dir), Path(features_dir), Path(out_dir)
    for name in targets:
        if name not in TARGETS:
            raise ValueError(f"targets: expected names among {', '.join(TARGETS)}, got {name!r}.")
    if (prepared_dir / "fmri_train.npy").is_file() and not (prepared_dir / "meta.json").is_file():
        raise FileNotFoundError(f"{prepared_dir / 'meta.json'}: not found, so this subject's preparation is missing "
                                "or did not finish; rerun `braindiff prepare` (it resumes) before fitting.")
    fmri = np.asarray(_load(prepared_dir / "fmri_train.npy", "prepare the subject first (`braindiff prepare`)"))
    if low_rank is not None:  # every target's rank checked before the first fit (hours on NSD), from file headers
        for name in targets:
            stem, _, command = TARGETS[name]
            shape = read_array(features_dir / f"{stem}_train.npy", f"extract the features first (`{command}`)").shape
            check_rank(low_rank, fmri.shape[1], int(np.prod(shape[1:])), f"low_rank ({name})")
    alphas = {**tier_alphas(tier, len(fmri)), **dict(alphas or {})}
    report: dict[str, dict[str, Any]] = {}
    for name in targets:
        stem, meta_name, command = TARGETS[name]
        path = out_dir / f"{name}.safetensors"
        if path.is_file() and not overwrite:
            saved = _saved_alpha(path)
            if saved is not None and np.isclose(saved, float(alphas[name]), rtol=1e-9, atol=0):
                report[name] = {"path": str(path), "status": "exists"}
                continue
            if log is not None:
                was = f"was fitted with alpha {saved:g}" if saved is not None else "records no alpha"
                log(f"{name}: {path} {was}, {float(alphas[name]):g} is asked: refitting")
        features = _load(features_dir / f"{stem}_train.npy", f"extract the features first (`{command}`)")
        if features.shape[0] != fmri.shape[0]:
            raise ValueError(f"{features_dir / f'{stem}_train.npy'}: {features.shape[0]} rows, but "
                             f"{prepared_dir / 'fmri_train.npy'} has {fmri.shape[0]} trials; re-extract features "
                             "for this prepared subject.")
        n_targets = int(np.prod(features.shape[1:]))
        # Weights go to a memory-mapped scratch file: a full-size CLIP-vision matrix (12.4 GB) never sits in RAM.
        scratch = out_dir / f".{name}.weights.npy"
        out_dir.mkdir(parents=True, exist_ok=True)
        _check_free_space(out_dir, fmri.shape[1] * n_targets * 4, name)
        try:
            entry = _fit_one(name, fmri, features, scratch, path, alphas[name], ridge_options, low_rank,
                             prepared_dir, features_dir / meta_name)
        finally:  # an error or Ctrl-C leaves no scratch weights (12.4 GB for NSD); a map still open (Windows) keeps
            with contextlib.suppress(OSError):  # the file, and the original error is the one reported
                scratch.unlink(missing_ok=True)
        report[name] = entry
        if log is not None:
            log(f"{name}: saved {path} ({', '.join(f'{k}={v}' for k, v in entry.items() if k != 'path')})")
        del features
    return report


def _fit_one(name: str, fmri: np.ndarray, features: np.ndarray, scratch: Path, path: Path, alpha: float,
             ridge_options: Mapping[str, Any], low_rank: int | None, prepared_dir: Path,
             meta_path: Path) -> dict[str, Any]:
    """Fit one target's regressor into ``scratch`` weights and save it at ``path``; its report entry."""
    weights = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32,
                                        shape=(fmri.shape[1], int(np.prod(features.shape[1:]))))
    reg = RidgeRegressor(alpha, **ridge_options).fit(fmri, features, weights_out=weights)
    entry: dict[str, Any] = {"path": str(path), "status": "fitted", "alpha": alpha, "shape": list(features.shape[1:])}
    if low_rank is not None:
        low = to_low_rank(reg, low_rank)
        test = prepared_dir / "fmri_test.npy"
        if test.is_file():
            entry["fidelity"] = low_rank_fidelity(reg, low, read_array(test, finite=True))
        entry["rank"], reg = low_rank, low
    metadata = {"target": name, "alpha": repr(alpha), "n_trials": str(fmri.shape[0]),
                "features_metadata": meta_path.read_text() if meta_path.is_file() else "{}"}
    save_regressor(reg, path, metadata)
    del reg, weights  # the memory map is closed before the caller removes the scratch file
    return entry

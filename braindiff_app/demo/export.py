"""The demo tier's committed ROI-studio workspace: what the ROI studio needs on a fresh clone, kept small.

The ROI studio reads, per subject, the ROI NIfTIs of the (simulated) NSD folder, the prepared ``voxel_ijk.npy``
and the three regressors. The demo's full workspace (hundreds of MB of betas and dense regressors) stays in
``BRAINDIFF_HOME``; :func:`export_roi_workspace` copies the ROI files and the voxel order, and stores each
regressor in its low-rank form (rank ``r``), into ``assets/demo/home``, laid out as a workspace. The app reads it
there (through :func:`braindiff_app.roi.roi_settings`) whenever the user has no demo regressors of their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from braindiff_app.atomic import atomic_folder, atomic_save_npy
from braindiff_app.config import DEMO_ROI_HOME, Settings, load_settings
from braindiff_app.data import nsd_layout

__all__ = ["export_roi_workspace"]


def export_roi_workspace(settings: Settings, subjects: Sequence[str] = ("1", "2", "5", "7"), rank: int = 32,
                         out: str | Path = DEMO_ROI_HOME) -> dict[str, float]:
    """Copy what the ROI studio needs from a built demo workspace into ``out`` (a workspace root).

    Parameters
    ----------
    settings : Settings
        The demo tier's settings whose workspace holds the simulated NSD, prepared subjects and regressors.
    subjects : sequence of str
        Subjects to export.
    rank : int, default 32
        Rank of the stored regressors (:func:`braindiff_app.regression.lowrank.to_low_rank`).
    out : path
        Destination workspace root, holding only the ROI studio's files (default ``assets/demo/home``). The new
        workspace is staged beside it, beginning from a copy of it, and replaces it whole at the end
        (:func:`~braindiff_app.atomic.atomic_folder`): a run stopped halfway leaves it as it was, never subjects
        (or files of one subject) from two runs.

    Returns
    -------
    dict of str to float
        Relative prediction error of each low-rank regressor on the subject's test fMRI, keyed
        ``"subj01/vdvae"`` etc. (the ROI studio's fidelity).
    """
    import numpy as np

    from braindiff_app.regression import FEATURE_NAMES, load_regressor, save_regressor
    from braindiff_app.regression.lowrank import to_low_rank

    out = Path(out)
    errors: dict[str, float] = {}
    with atomic_folder(out) as staging:
        if out.is_dir():  # subjects not exported this time are kept
            shutil.copytree(out, staging, dirs_exist_ok=True)
        target = load_settings(home=staging, tier="demo")
        for s in subjects:
            number = int(s)
            roi_src = nsd_layout.roi_dir(settings.nsd_dir, number)
            if not roi_src.is_dir():
                raise FileNotFoundError(f"{roi_src}: no ROI files; run `braindiff demo simulate` first.")
            with atomic_folder(nsd_layout.roi_dir(target.nsd_dir, number)) as roi_dst:
                shutil.copytree(roi_src, roi_dst, dirs_exist_ok=True)
            prepared = settings.subject_dir("prepared", s)
            ijk = np.load(prepared / "voxel_ijk.npy", allow_pickle=False)
            atomic_save_npy(target.subject_dir("prepared", s) / "voxel_ijk.npy", ijk.astype(np.int16))
            fmri_test = np.load(prepared / "fmri_test.npy", mmap_mode="r", allow_pickle=False)
            dst = target.subject_dir("regressors", s)
            dst.mkdir(parents=True, exist_ok=True)
            for name in FEATURE_NAMES:
                dense = load_regressor(settings.subject_dir("regressors", s) / f"{name}.safetensors")
                compact = to_low_rank(dense, rank)
                full = dense.predict(fmri_test).reshape(len(fmri_test), -1)
                approx = compact.predict(fmri_test).reshape(len(fmri_test), -1)
                errors[f"subj{number:02d}/{name}"] = float(np.linalg.norm(full - approx) / np.linalg.norm(full))
                alpha = dense.metadata.get("alpha")  # what it was fitted with (fit_subject records it)
                save_regressor(compact, dst / f"{name}.safetensors", {"alpha": alpha} if alpha else None)
    return errors

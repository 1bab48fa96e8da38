"""A subject's three regressors in a tier's workspace: their names, loading them, finding who has them.

``settings.subject_dir("regressors", subject)`` holds ``vdvae.safetensors``, ``clip_vision.safetensors`` and
``clip_text.safetensors`` (the regressor files of docs/architecture.md, written by ``braindiff fit``).
"""

from __future__ import annotations

from braindiff_app.config import Settings, subject_folder
from braindiff_app.regression.ridge import RidgeRegressor
from braindiff_app.regression.storage import load_regressor

__all__ = ["FEATURE_NAMES", "load_regressors", "subjects_with_regressors"]

#: The three regressors' targets, in the order of their feature and regressor files (also their file stems).
FEATURE_NAMES = ("vdvae", "clip_vision", "clip_text")


def load_regressors(settings: Settings, subject: int | str) -> dict[str, RidgeRegressor]:
    """Load a subject's three regressors from ``settings.subject_dir("regressors", subject)``.

    Parameters
    ----------
    settings : Settings
        Tier and workspace.
    subject : int or str
        NSD subject number (1, 2, 5, 7).

    Returns
    -------
    dict of str to RidgeRegressor
        Keyed by :data:`FEATURE_NAMES`, weights memory-mapped.

    Raises
    ------
    FileNotFoundError
        Naming each missing file and the command that writes it.
    """
    folder = settings.subject_dir("regressors", subject)
    paths = {name: folder / f"{name}.safetensors" for name in FEATURE_NAMES}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"regressors of {subject_folder(subject)} missing: {', '.join(missing)}; "
                                f"run `braindiff fit --subject {subject}` (tier {settings.tier}) first.")
    return {name: load_regressor(path) for name, path in paths.items()}


def subjects_with_regressors(settings: Settings) -> list[str]:
    """Subjects (``"1"``, ``"2"``, ...) whose three regressors exist in this tier's workspace, by number."""
    root = settings.workspace / "regressors"
    found = []
    if root.is_dir():
        for folder in root.glob("subj*"):
            number = folder.name.removeprefix("subj")
            if number.isdigit() and all((folder / f"{n}.safetensors").exists() for n in FEATURE_NAMES):
                found.append(str(int(number)))
    return sorted(found, key=int)

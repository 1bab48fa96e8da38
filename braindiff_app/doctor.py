"""What can run here: each tier's and feature's assets, found or missing, with the exact path expected.

The checks only look at files (no model is loaded, nothing is downloaded), so ``braindiff doctor`` is instant.
Each area's check is a plain function returning :class:`Asset` records; :func:`diagnose` gathers them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from braindiff_app.config import PRECOMPUTED_DIR, Settings
from braindiff_app.models.versatile import expected_files

__all__ = ["Asset", "Feature", "diagnose", "format_report"]


@dataclass(frozen=True)
class Asset:
    """One file or folder a feature needs.

    Attributes
    ----------
    path : Path or None
        Where it is expected (None when the location itself is not configured).
    what : str
        What the file is, in plain words, and how to get it.
    """

    path: Path | None
    what: str

    @property
    def found(self) -> bool:
        return self.path is not None and self.path.exists()


@dataclass(frozen=True)
class Feature:
    """A capability and the assets it needs; usable when every asset is found."""

    tier: str
    name: str
    assets: tuple[Asset, ...]

    @property
    def usable(self) -> bool:
        return all(a.found for a in self.assets)


def _module(name: str, pip_name: str) -> Asset:
    spec = importlib.util.find_spec(name)
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    return Asset(origin, f"Python package {name!r} (pip install {pip_name})")


def _demo_features(settings: Settings) -> list[Feature]:
    models = settings.demo_models_dir
    return [
        Feature("demo", "browse precomputed demo bundles", (
            Asset(PRECOMPUTED_DIR, "bundles shipped with the repo (write them with `braindiff demo build`)"),
        )),
        Feature("demo", "stage 1 (demo VDVAE)", (
            Asset(models / "vdvae", "demo VDVAE weights + config (`braindiff demo train-vdvae`)"),
        )),
        Feature("demo", "stage 2 (demo Versatile Diffusion) and CLIP features", tuple(
            Asset(path, "demo Versatile Diffusion file (`braindiff demo train-diffusion` writes them)")
            for path in expected_files(models / "vd")
        )),
    ]


def _real_features(settings: Settings) -> list[Feature]:
    nsd = settings.nsd_root
    nsd_assets = (
        Asset(nsd / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat" if nsd else None,
              "NSD experimental design (set BRAINDIFF_NSD_ROOT or --nsd-root to your NSD copy)"),
        Asset(nsd / "nsddata_betas" / "ppdata" if nsd else None, "NSD single-trial betas (func1pt8mm)"),
        Asset(nsd / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5" if nsd else None,
              "NSD stimuli HDF5 (73k images)"),
    )
    vd = settings.vd_dir
    vd_assets = tuple(
        Asset(path, f"Versatile Diffusion {path.parent.name} file (diffusers layout; set BRAINDIFF_VD_DIR or --vd-dir)")
        for path in expected_files(vd)
    ) if vd else (Asset(None, "Versatile Diffusion folder in diffusers layout (set BRAINDIFF_VD_DIR or --vd-dir)"),)
    return [
        Feature("real", "NSD preparation", nsd_assets),
        Feature("real", "stage 1 (VDVAE imagenet64)", (
            Asset(settings.vdvae_checkpoint,
                  "VDVAE imagenet64 EMA checkpoint imagenet64-iter-1600000-model-ema.th "
                  "(set BRAINDIFF_VDVAE_CHECKPOINT or --vdvae-checkpoint)"),
        )),
        Feature("real", "stage 2 (Versatile Diffusion) and CLIP features", vd_assets),
    ]


def _app_features() -> list[Feature]:
    return [
        Feature("any", "app", (_module("gradio", "gradio"),)),
        Feature("any", "NSD NIfTI reading", (_module("nibabel", "nibabel"),)),
    ]


def diagnose(settings: Settings) -> list[Feature]:
    """List every feature with its assets, found or missing.

    Parameters
    ----------
    settings : Settings
        Resolved configuration (see :func:`braindiff_app.config.load_settings`).

    Returns
    -------
    list of Feature
        In display order: tier-independent, demo, real.
    """
    return _app_features() + _demo_features(settings) + _real_features(settings)


def format_report(features: list[Feature], settings: Settings) -> str:
    """Render :func:`diagnose`'s result as plain text, one line per feature and per missing asset."""
    lines = [
        f"workspace: {settings.workspace}  (tier {settings.tier})",
        "bundle folders: " + ", ".join(str(d) for d in settings.bundle_dirs),
        "",
    ]
    for feature in features:
        mark = "ok     " if feature.usable else "MISSING"
        lines.append(f"[{mark}] {feature.tier:<4} {feature.name}")
        for asset in feature.assets:
            if not asset.found:
                where = asset.path if asset.path is not None else "(location not configured)"
                lines.append(f"          expected: {where}\n                    {asset.what}")
    return "\n".join(lines)

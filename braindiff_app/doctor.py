"""What can run here: each tier's and feature's assets, found or missing, with the exact path expected.

The checks only look at files (no model is loaded, nothing is downloaded), so ``braindiff doctor`` is instant.
Each area's check is a plain function returning :class:`Asset` records; :func:`diagnose` gathers them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from braindiff_app.config import DEMO_ANATOMY_DIR, PRECOMPUTED_DIR, Settings
from braindiff_app.data import nsd_layout as L
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
    demo = settings.with_overrides(tier="demo")
    anatomy = DEMO_ANATOMY_DIR
    nsd = demo.nsd_dir  # the demo tier's simulated NSD, whatever the current tier (the real one may have none set)
    return [
        Feature("demo", "demo anatomy, ROIs and flatmap", tuple(
            Asset(anatomy / name, f"demo anatomy file {name} (rebuild with `braindiff demo anatomy`, needs pycortex)")
            for name in ("anatomy.npz", "flatmap.png", "flatmap_lookup.npz")
        )),
        Feature("demo", "simulated NSD (demo subjects 1, 2, 5, 7)", (
            Asset(nsd / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat",
                  "simulated NSD design (write the simulated NSD with `braindiff demo simulate`)"),
            Asset(nsd / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5",
                  "simulated NSD stimuli (`braindiff demo simulate`)"),
        )),
        Feature("demo", "browse precomputed demo bundles", (
            Asset(PRECOMPUTED_DIR, "bundles shipped with the repo (write them with `braindiff demo build`)"),
        )),
        Feature("demo", "stage 1 (demo VDVAE)", (
            Asset(demo.vdvae_path / "config.json", "demo VDVAE config (committed; `braindiff demo train-vdvae`)"),
            Asset(demo.vdvae_path / "model.safetensors",
                  "demo VDVAE weights (committed; `braindiff demo train-vdvae` rewrites them)"),
        )),
        Feature("demo", "stage 2 (demo Versatile Diffusion) and CLIP features", tuple(
            Asset(path, "demo Versatile Diffusion file (`braindiff demo train-diffusion` writes them)")
            for path in expected_files(demo.vd_path)
        )),
    ]


def _nsd_assets(nsd: Path | None) -> tuple[Asset, ...]:
    """The exact NSD files ``braindiff prepare`` reads (subject 1 shown for per-subject files)."""
    if nsd is None:
        return (Asset(None, "a local NSD copy (set BRAINDIFF_NSD_ROOT or --nsd-root to the folder holding "
                            "nsddata/, nsddata_betas/, nsddata_stimuli/)"),)
    return (
        Asset(L.expdesign_path(nsd), "NSD experimental design nsd_expdesign.mat"),
        Asset(L.stim_info_path(nsd), "NSD stimulus table nsd_stim_info_merged.csv (NSD id -> COCO id)"),
        Asset(L.roi_path(nsd, 1, "nsdgeneral"), "nsdgeneral ROI (func1pt8mm), one per subject subjXX"),
        Asset(L.betas_path(nsd, 1, 1), "single-trial betas betas_sessionNN.nii.gz (func1pt8mm, "
                                       "betas_fithrf_GLMdenoise_RR), sessions 01-37 per subject"),
        Asset(L.stimuli_path(nsd), "NSD stimuli HDF5 (imgBrick, 73k images)"),
        Asset(L.captions_path(nsd, "train2017"), "COCO captions, train2017 split (NSD's annotations folder)"),
        Asset(L.captions_path(nsd, "val2017"), "COCO captions, val2017 split (NSD's annotations folder)"),
    )


def _real_features(settings: Settings) -> list[Feature]:
    nsd_assets = _nsd_assets(settings.nsd_root)
    real = settings.with_overrides(tier="real")
    vd = real.vd_path
    vd_assets = tuple(
        Asset(path, f"Versatile Diffusion {path.parent.name} file (diffusers layout; set BRAINDIFF_VD_DIR or --vd-dir)")
        for path in expected_files(vd)
    ) if vd else (Asset(None, "Versatile Diffusion folder in diffusers layout (set BRAINDIFF_VD_DIR or --vd-dir)"),)
    return [
        Feature("real", "NSD preparation", nsd_assets),
        Feature("real", "stage 1 (VDVAE imagenet64)", (
            Asset(real.vdvae_path,
                  "VDVAE imagenet64 EMA checkpoint imagenet64-iter-1600000-model-ema.th from openai/vdvae "
                  "(https://openaipublic.blob.core.windows.net/very-deep-vaes-assets/vdvae-assets-2/"
                  "imagenet64-iter-1600000-model-ema.th; set BRAINDIFF_VDVAE_CHECKPOINT or --vdvae-checkpoint)"),
        )),
        Feature("real", "stage 2 (Versatile Diffusion) and CLIP features", vd_assets),
    ]


def _pipeline_features(settings: Settings, subject: int = 1) -> list[Feature]:
    """Reconstruction and ROI studio for one subject of the settings' tier (other subjects need the same files)."""
    from braindiff_app.data.atlas import REGION_SOURCES
    from braindiff_app.data.nsd_layout import roi_path
    from braindiff_app.regression.workspace import FEATURE_NAMES
    from braindiff_app.roi import roi_settings

    def regressor_files(settings: Settings) -> tuple[Asset, ...]:
        folder = settings.subject_dir("regressors", subject)
        return tuple(Asset(folder / f"{n}.safetensors", f"{n} regressor (`braindiff fit --subject {subject}`)")
                     for n in FEATURE_NAMES)

    name = f"subj{subject:02d}"
    prepared = settings.subject_dir("prepared", subject)
    test = tuple(Asset(prepared / f, f"prepared test split (`braindiff prepare --subject {subject}`)")
                 for f in ("fmri_test.npy", "images_test.npy", "captions_test.json", "meta.json"))
    # The ROI studio reads the committed demo workspace when the user has built no demo regressors.
    roi, committed = roi_settings(settings)
    nsd = roi.nsd_dir
    stems = ("nsdgeneral", *dict.fromkeys(stem for stem, _ in REGION_SOURCES.values()))
    rois = tuple(Asset(roi_path(nsd, subject, stem) if nsd else None, f"{stem} ROI volume of {name} (NSD layout)")
                 for stem in stems)
    ijk = (Asset(roi.subject_dir("prepared", subject) / "voxel_ijk.npy",
                 f"nsdgeneral voxel positions (`braindiff prepare --subject {subject}`)"),)
    where = " from the committed demo workspace" if committed else ""
    features = [
        Feature(settings.tier, f"reconstruct {name} (`braindiff reconstruct`)", regressor_files(settings) + test),
        Feature(settings.tier, f"ROI studio {name} (`braindiff roi`){where}", regressor_files(roi) + ijk + rois),
    ]
    if settings.tier == "real":
        features.append(Feature("real", f"ROI studio painting on {name}'s flatmap", _flatmap_assets(nsd, subject)))
    return features


def _flatmap_assets(nsd: Path | None, subject: int) -> tuple[Asset, ...]:
    """The NSD files an NSD subject's flatmap is built from (required ones; built and cached on first use)."""
    from braindiff_app.data.nsd_flatmap import flatmap_inputs

    if nsd is None:
        return (Asset(None, "a local NSD copy (set BRAINDIFF_NSD_ROOT or --nsd-root)"),)
    return tuple(Asset(path, f"{what} (NSD)") for path, what, required in flatmap_inputs(nsd, subject) if required)


def _evaluation_features(settings: Settings) -> list[Feature]:
    from braindiff_app.evaluation.backbones import BACKBONES, weight_file

    weights = settings.eval_weights
    assets = []
    for name, spec in BACKBONES.items():
        found = weight_file(name, weights)
        also = f" (or {', '.join(spec.files[1:])})" if len(spec.files) > 1 else ""
        assets.append(Asset(found or weights / spec.files[0],
                            f"{spec.title} weights{also} for {', '.join(spec.metrics)}, from {spec.urls[0]} "
                            "(set BRAINDIFF_EVAL_WEIGHTS / --eval-weights, or `braindiff evaluate --download`)"))
    vd = settings.vd_dir
    assets.append(Asset(vd / "image_encoder" / "config.json" if vd else None,
                        "CLIP ViT-L/14 image encoder for CLIP: the image_encoder of the Versatile Diffusion folder "
                        "(set BRAINDIFF_VD_DIR or --vd-dir)"))
    return [
        Feature("any", "evaluation: PixCorr, SSIM, SSIM-ref", (_module("scipy", "scipy"), _module("PIL", "pillow"))),
        Feature("demo", "evaluation: demo-CLIP identification", (
            Asset(settings.with_overrides(tier="demo").vd_path / "image_encoder" / "config.json",
                  "demo CLIP vision encoder (`braindiff demo train-diffusion`)"),
        )),
        Feature("real", "evaluation: AlexNet(2), AlexNet(5), Inception, CLIP, EffNet-B, SwAV", tuple(assets)),
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
    pipeline = _pipeline_features(settings)
    demo = _demo_features(settings) + (pipeline if settings.tier == "demo" else [])
    real = _real_features(settings) + (pipeline if settings.tier == "real" else [])
    return _app_features() + demo + real + _evaluation_features(settings)


def summary_lines(features: list[Feature]) -> list[str]:
    """One line per tier, e.g. 'demo: ready (6 of 8 features); not set up: ...' or 'real: not set up, 3 files missing'.

    Features of tier ``any`` (the app, evaluation) count towards every tier.
    """
    lines = []
    tiers = [t for t in dict.fromkeys(f.tier for f in features) if t != "any"]
    for tier in tiers:
        own = [f for f in features if f.tier in (tier, "any")]
        missing = [f for f in own if not f.usable]
        n_files = sum(not a.found for f in missing for a in f.assets)
        files = f"{n_files} file{'s' if n_files != 1 else ''} missing"
        if not missing:
            lines.append(f"{tier}: ready ({len(own)} of {len(own)} features)")
        elif len(missing) == len([f for f in own if f.tier == tier]):
            lines.append(f"{tier}: not set up, {files} (see [MISSING] below)")
        else:
            names = "; ".join(f.name for f in missing)
            lines.append(f"{tier}: ready ({len(own) - len(missing)} of {len(own)} features); "
                         f"not set up: {names} ({files})")
    return lines


def format_report(features: list[Feature], settings: Settings) -> str:
    """Render :func:`diagnose`'s result as plain text: a summary line per tier, then one line per feature and per
    missing asset."""
    lines = [*summary_lines(features), "",
             f"workspace: {settings.workspace}  (tier {settings.tier})",
             "bundle folders: " + ", ".join(str(d) for d in settings.bundle_dirs),
             ""]
    for feature in features:
        mark = "ok     " if feature.usable else "MISSING"
        lines.append(f"[{mark}] {feature.tier:<4} {feature.name}")
        for asset in feature.assets:
            if not asset.found:
                where = asset.path if asset.path is not None else "(location not configured)"
                lines.append(f"          expected: {where}\n                    {asset.what}")
    return "\n".join(lines)

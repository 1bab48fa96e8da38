"""ROI-optimal images: synthetic fMRI patterns from weighted regions or painted voxels, through the pipeline.

A synthetic pattern lives in the regressors' input space (voxels z-scored with the training statistics): 1 on
the chosen voxels, 0 (the mean response) elsewhere, as in the paper; a weighted combination such as
``"V1:+1,faces:+1,V2:-1"`` sums each region's indicator times its weight, and painted voxels add their own weight.
The pattern goes through a subject's regressors; as in the reference code, the pattern's effect on each prediction
(prediction minus intercept) is brought to the size of a typical training image's deviation from the mean features
and added to the intercept ("effect" rescale; the "norm" rescale, which scales the whole prediction to the typical
norm of training predictions, is the other choice), then stage 1 and stage 2. The subject average is the mean of
the features each subject's regressors predict from its own atlas's pattern.

A :class:`Recipe` (regions, weights, painted voxels, subject, seed, settings) saved as JSON re-creates an image.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from braindiff_app.arrays import read_array
from braindiff_app.config import DEMO_ROI_HOME, Settings, check_in_allowed
from braindiff_app.data.atlas import (
    CATEGORY_REGIONS,
    ECCENTRICITY_REGIONS,
    VISUAL_REGIONS,
    ROIAtlas,
    canonical_region,
    load_atlas,
)
from braindiff_app.images import resize_images
from braindiff_app.pipeline import BrainDiffuserPipeline, ReconstructionOutput, average_features, load_pipeline
from braindiff_app.regression import FEATURE_NAMES, load_regressors, subjects_with_regressors
from braindiff_app.roi_recipe import (
    MAX_RECIPE_BYTES,
    MAX_SEED,
    MAX_WEIGHT,
    PATTERN_RESCALES,
    RECIPE_FORMAT,
    RECIPE_VERSION,
    Recipe,
    _check_weight,
    format_regions,
)

__all__ = [
    "RECIPE_FORMAT",
    "RECIPE_VERSION",
    "MAX_RECIPE_BYTES",
    "PAPER_FIGURES",
    "MAX_WEIGHT",
    "MAX_SEED",
    "parse_regions",
    "format_regions",
    "synthetic_pattern",
    "painted_voxels",
    "flatmap_voxel_lookup",
    "load_subject_flatmap",
    "PATTERN_RESCALES",
    "predict_pattern_features",
    "load_subject_atlas",
    "Recipe",
    "ROIModels",
    "load_roi_models",
    "roi_settings",
    "paper_figure",
]

#: The paper's ROI figures: Figure 5 (visual and category regions) and Figure 7 (eccentricity bands).
PAPER_FIGURES = {"figure5": VISUAL_REGIONS + CATEGORY_REGIONS, "figure7": ECCENTRICITY_REGIONS}
# --------------------------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------------------------
def parse_regions(text: str) -> dict[str, float]:
    """Parse a weighted region list such as ``"V1:+1,faces:+1,V2:-1"`` or ``"+V1 +hV4 -bodies"``.

    Items are separated by commas or spaces; each is ``name``, ``name:weight``, ``+name`` or ``-name`` (a leading
    sign multiplies the weight, default 1). Names match case-insensitively (see
    :data:`~braindiff_app.data.atlas.ALL_REGIONS`).

    Returns
    -------
    dict of str to float
        Canonical region name -> weight, in the order given.

    Raises
    ------
    ValueError
        An unknown region, a weight that is not a finite number within +-:data:`MAX_WEIGHT` (100), or a region
        given twice.
    """
    if not isinstance(text, str):
        raise TypeError(f"regions: expected a string like 'V1:+1,faces:+1,V2:-1', got {type(text).__name__}.")
    weights: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        sign = 1.0
        if item[0] in "+-" and len(item) > 1 and item[1] != ":":
            sign, item = (-1.0 if item[0] == "-" else 1.0), item[1:]
        name, _, weight_text = item.partition(":") if ":" in item else (item, "", "1")
        try:
            weight = float(weight_text)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight):
            raise ValueError(f"regions: weight of {name!r} must be a finite number like +1 or -0.5, got "
                             f"{weight_text!r}.")
        if abs(weight) > MAX_WEIGHT:
            raise ValueError(f"regions: weight of {name!r} must lie in [-{MAX_WEIGHT:g}, +{MAX_WEIGHT:g}] (the "
                             f"pattern is in z-scored voxel units), got {weight_text!r}.")
        try:
            name = canonical_region(name)
        except ValueError as exc:
            raise ValueError(f"regions: {str(exc).removeprefix('region: ')}") from None
        if name in weights:
            raise ValueError(f"regions: {name!r} is given twice; give each region once with its total weight.")
        weights[name] = sign * weight
    return weights


def synthetic_pattern(
    atlas: ROIAtlas,
    regions: Mapping[str, float] | None = None,
    painted: Sequence[int] | np.ndarray | None = None,
    painted_weight: float = 1.0,
) -> np.ndarray:
    """A synthetic fMRI pattern: weighted region indicators plus painted voxels, in z-scored voxel units.

    Parameters
    ----------
    atlas : ROIAtlas
        The subject's regions.
    regions : mapping of str to float, optional
        Region name -> weight (e.g. from :func:`parse_regions`); overlapping regions add up.
    painted : sequence of int, optional
        Indices of painted voxels (0 ... n_voxels-1), e.g. from :func:`painted_voxels`.
    painted_weight : float, default 1.0
        Value added on painted voxels.

    Returns
    -------
    array of shape (n_voxels,), float32

    Raises
    ------
    ValueError
        Empty selection (no region and no painted voxel), a region the subject lacks, voxel indices out of range,
        a weight that is not finite or beyond +-:data:`MAX_WEIGHT`, or weights that cancel to an all-zero pattern.
    """
    regions = {name: _check_weight(weight, f"regions[{name!r}]") for name, weight in dict(regions or {}).items()}
    painted_weight = _check_weight(painted_weight, "painted_weight")
    painted = np.asarray([] if painted is None else painted)
    if not regions and painted.size == 0:
        raise ValueError("empty selection: choose at least one region (e.g. 'V1:+1') or paint some voxels on the "
                         "flatmap before generating.")
    pattern = np.zeros(atlas.n_voxels, dtype=np.float32)
    for name, weight in regions.items():
        pattern[atlas.indices(name)] += np.float32(weight)
    if painted.size:
        if not np.issubdtype(painted.dtype, np.integer):
            raise TypeError(f"painted: expected integer voxel indices, got {painted.dtype}.")
        if painted.min() < 0 or painted.max() >= atlas.n_voxels:
            raise ValueError(f"painted: voxel indices must lie in 0..{atlas.n_voxels - 1} (subject "
                             f"{atlas.subject}), got {painted.min()}..{painted.max()}.")
        pattern[np.unique(painted)] += np.float32(painted_weight)
    if not pattern.any():
        raise ValueError(f"empty selection: the weights {format_regions(regions) or '(none)'} cancel out to an "
                         "all-zero pattern; change a weight or add a region.")
    return pattern


def painted_voxels(mask: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Voxels under painted flatmap pixels, through the cached pixel -> voxel lookup.

    Parameters
    ----------
    mask : array of shape (height, width), bool
        Painted pixels of the flatmap image.
    lookup : array of shape (height, width), int
        Voxel index (into the subject's nsdgeneral voxels) under each flatmap pixel; -1 where none.

    Returns
    -------
    array of shape (n_painted_voxels,), int64
        Sorted unique voxel indices (empty when nothing painted lies on a voxel).
    """
    mask, lookup = np.asarray(mask), np.asarray(lookup)
    if mask.shape != lookup.shape:
        raise ValueError(f"mask: expected the flatmap's shape {lookup.shape}, got {mask.shape}.")
    if mask.dtype != bool:
        raise TypeError(f"mask: expected a boolean array, got {mask.dtype}.")
    voxels = lookup[mask]
    return np.unique(voxels[voxels >= 0]).astype(np.int64)


def flatmap_voxel_lookup(pixel_grid_index: np.ndarray, atlas: ROIAtlas) -> np.ndarray:
    """Turn a flatmap's pixel -> grid-voxel lookup into a pixel -> subject-voxel lookup.

    Parameters
    ----------
    pixel_grid_index : array of shape (height, width), int
        Flat (C-order) index into the functional grid of the voxel under each pixel, -1 off the cortex (the
        ``pixel_voxel`` array of the cached flatmap, ``assets/demo/anatomy/flatmap_lookup.npz`` for the demo).
    atlas : ROIAtlas
        The subject's atlas, built by :func:`~braindiff_app.data.atlas.load_atlas` (it knows the voxels' grid
        positions).

    Returns
    -------
    array of shape (height, width), int64
        Index into the subject's nsdgeneral voxels under each pixel; -1 off the cortex or outside nsdgeneral.
        Feed it to :func:`painted_voxels`.
    """
    if atlas.voxel_ijk is None or atlas.grid_shape is None:
        raise ValueError(f"atlas: subject {atlas.subject}'s atlas has no voxel positions; build it with load_atlas.")
    pixels = np.asarray(pixel_grid_index, dtype=np.int64)
    flat = np.ravel_multi_index(tuple(np.asarray(atlas.voxel_ijk).T), atlas.grid_shape)  # (n_voxels,)
    order = np.argsort(flat)
    position = np.clip(np.searchsorted(flat[order], pixels), 0, len(flat) - 1)
    found = (pixels >= 0) & (flat[order][position] == pixels)
    return np.where(found, order[position], -1)


def load_subject_flatmap(settings: Settings, atlas: ROIAtlas) -> tuple[np.ndarray, np.ndarray]:
    """The flatmap image to paint on and its pixel -> subject-voxel lookup.

    Demo tier: the committed demo flatmap (``assets/demo/anatomy/``). Real tier: the NSD subject's flatmap, built
    from its FreeSurfer surfaces, flat patches and surface transforms in ``settings.nsd_dir`` on first use and
    cached in ``settings.subject_dir("flatmap", subject)`` (see :mod:`braindiff_app.data.nsd_flatmap`).

    Returns
    -------
    image : array of shape (height, width, 4), uint8
        Curvature with ROI outlines (RGBA, transparent off the cortex).
    lookup : array of shape (height, width), int64
        Subject voxel index under each pixel, -1 where none (for :func:`painted_voxels`).

    Raises
    ------
    FileNotFoundError
        No NSD folder configured, or one of the subject's flatmap files is missing (the message names it; region
        presets still work).
    """
    if settings.tier == "demo":
        from braindiff_app.data.flatmap import load_flatmap

        flatmap = load_flatmap()
    else:
        from braindiff_app.data.nsd_flatmap import load_nsd_flatmap

        if settings.nsd_dir is None:
            raise FileNotFoundError(f"flatmap of subject {atlas.subject}: no NSD folder configured; set "
                                    "BRAINDIFF_NSD_ROOT or --nsd-root (region presets work without it).")
        flatmap = load_nsd_flatmap(settings.nsd_dir, atlas.subject, settings.subject_dir("flatmap", atlas.subject))
    return flatmap.image, flatmap_voxel_lookup(flatmap.pixel_voxel, atlas)


def predict_pattern_features(regressors: Mapping[str, Any], patterns: np.ndarray,
                             rescale: str = "effect") -> dict[str, np.ndarray]:
    """Features of synthetic patterns, re-scaled because such patterns lie outside the training distribution.

    Parameters
    ----------
    regressors : mapping of str to RidgeRegressor
        ``vdvae``, ``clip_vision``, ``clip_text`` of one subject.
    patterns : array of shape (n_patterns, n_voxels)
        Synthetic patterns in the regressors' z-scored voxel space (:func:`synthetic_pattern`), predicted as
        they are (:meth:`~braindiff_app.regression.RidgeRegressor.predict_standardized`).
    rescale : str in {"effect", "norm"}, default "effect"
        - ``"effect"``: as the reference code does (``roi_generate_features.py``): the pattern's effect (its
          prediction minus the intercept, i.e. minus the all-zero pattern's prediction) is brought to a fixed
          size, then added back to the intercept. The size is that of a typical training image's deviation from
          the mean features (the regressor's ``typical_deviation``: the norm of the training features' per-target
          standard deviations): as far from the average as a test trial's prediction lies once re-scaled to the
          training features' statistics (the trials' "train" re-scaling). A small or weakly weighted region
          moves the image as far from the average image as a large one.
        - ``"norm"``: the whole prediction, intercept included, brought to the mean norm of the training
          predictions (the regressor's "norm" rescale). When a region's effect is small next to the intercept
          (small regions, heavy ridge shrinkage), every region gives nearly the average image.

    Returns
    -------
    dict of str to array of shape (n_patterns, *target_shape), float32
        An all-zero pattern (no effect) gives the intercept under "effect".
    """
    check_in_allowed(rescale, PATTERN_RESCALES, "rescale")
    patterns = np.atleast_2d(np.asarray(patterns, dtype=np.float64))
    features = {}
    for name in FEATURE_NAMES:
        reg = regressors[name]
        if rescale == "norm":
            features[name] = np.asarray(reg.predict_standardized(patterns, rescale="norm"), dtype=np.float32)
            continue
        rows = np.concatenate([patterns, np.zeros_like(patterns[:1])])  # the last row: the all-zero pattern
        raw = np.asarray(reg.predict_standardized(rows, rescale="none"), dtype=np.float64)
        shape = raw.shape[1:]
        raw = raw.reshape(len(raw), -1)  # (n_patterns + 1, n_targets)
        effect = raw[:-1] - raw[-1:]
        norms = np.linalg.norm(effect, axis=1, keepdims=True)
        scaled = raw[-1:] + effect * (reg.typical_deviation / np.where(norms > 0, norms, 1.0))
        features[name] = scaled.reshape(len(patterns), *shape).astype(np.float32)
    return features


def load_subject_atlas(settings: Settings, subject: int | str) -> ROIAtlas:
    """A subject's atlas from ``settings.nsd_dir``, in the voxel order of its prepared data when prepared."""
    if settings.nsd_dir is None:
        raise FileNotFoundError("ROI atlas: no NSD folder configured; set BRAINDIFF_NSD_ROOT or --nsd-root.")
    ijk_path = settings.subject_dir("prepared", subject) / "voxel_ijk.npy"
    voxel_ijk = read_array(ijk_path, mmap=False) if ijk_path.exists() else None
    return load_atlas(settings.nsd_dir, subject, voxel_ijk=voxel_ijk)


# --------------------------------------------------------------------------------------------------------
# Generating
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ROIModels:
    """Loaded models for ROI experiments: the image pipeline plus each subject's atlas and regressors.

    Attributes
    ----------
    pipeline : BrainDiffuserPipeline
        Stage 1 and 2 models (its own regressors are not used).
    atlases : dict of str to ROIAtlas
        Subject -> atlas, for every subject that has regressors.
    regressors : dict of str to mapping
        Subject -> ``{"vdvae", "clip_vision", "clip_text"}`` regressors.
    tier : str
    """

    pipeline: BrainDiffuserPipeline
    atlases: dict[str, ROIAtlas]
    regressors: dict[str, Mapping[str, Any]]
    tier: str = "demo"

    @property
    def subjects(self) -> list[str]:
        """Subjects available for ROI experiments (the average needs at least one)."""
        return list(self.atlases)

    def _lacking(self, subject: str, recipe: Recipe) -> list[str]:
        """The recipe's regions that ``subject``'s atlas lacks."""
        return [r for r in recipe.regions if r not in self.atlases[subject].regions]

    def patterns(self, recipe: Recipe) -> dict[str, np.ndarray]:
        """The recipe's synthetic pattern (:func:`synthetic_pattern`) on the voxels of each subject it uses.

        Returns
        -------
        dict of str to array of shape (n_voxels,), float32
            Subject -> pattern in that subject's z-scored voxel space: the recipe's subject alone, or for the
            average every subject that has every requested region (in :attr:`subjects` order).

        Raises
        ------
        ValueError
            An unknown subject, an empty selection, or (average) no subject with every requested region.
        """
        if recipe.subject != "average":
            if recipe.subject not in self.atlases:
                raise ValueError(f"subject: expected one of {self.subjects + ['average']}, got {recipe.subject!r} "
                                 "(a subject needs prepared data and regressors).")
            return {recipe.subject: synthetic_pattern(self.atlases[recipe.subject], recipe.regions, recipe.painted,
                                                      recipe.painted_weight)}
        patterns = {s: synthetic_pattern(self.atlases[s], recipe.regions) for s in self.subjects
                    if not self._lacking(s, recipe)}
        if not patterns:
            skipped = [f"{s} (no {', '.join(self._lacking(s, recipe))} voxels)" for s in self.subjects]
            raise ValueError(f"subject average: no subject has every requested region: {'; '.join(skipped)}.")
        return patterns

    def features(self, recipe: Recipe) -> dict[str, np.ndarray]:
        """Predicted features (1, ...) of a recipe: one subject's, or the mean over subjects for the average.

        The patterns are :meth:`patterns`'s; for the average, subjects lacking a requested region are left out with
        a warning. The re-scaling is ``recipe.settings["rescale"]`` (default "effect", see
        :func:`predict_pattern_features`).
        """
        rescale = recipe.settings.get("rescale", "effect")
        patterns = self.patterns(recipe)
        per_subject = [predict_pattern_features(self.regressors[s], p, rescale) for s, p in patterns.items()]
        if recipe.subject != "average":
            return per_subject[0]
        skipped = [f"{s} (no {', '.join(self._lacking(s, recipe))} voxels)" for s in self.subjects
                   if s not in patterns]
        if skipped:
            warnings.warn(f"subject average leaves out subjects {', '.join(skipped)}.", RuntimeWarning,
                          stacklevel=2)
        return average_features(per_subject)

    def generate(self, recipe: Recipe, callback: Callable[[str, int, int], None] | None = None,
                 ) -> ReconstructionOutput:
        """Run a recipe: pattern -> regressors (re-scaled, see :meth:`features`) -> VDVAE guess -> final image."""
        return self.pipeline(features=self.features(recipe), seeds=np.array([recipe.seed]), callback=callback,
                             **recipe.stage2.to_json())


def roi_settings(settings: Settings) -> tuple[Settings, bool]:
    """Settings the ROI studio reads: the user's own, or the committed demo workspace when the user has none.

    Returns
    -------
    settings : Settings
    committed : bool
        True when the committed demo workspace (``assets/demo/home``, written by ``braindiff demo export-roi``)
        is used.
    """
    if settings.tier != "demo" or subjects_with_regressors(settings):
        return settings, False
    return settings.with_overrides(home=DEMO_ROI_HOME, nsd_root=None), True


def load_roi_models(settings: Settings, subjects: Sequence[int | str] | None = None) -> ROIModels:
    """Load the pipeline of the settings' tier and each subject's atlas and regressors.

    Parameters
    ----------
    settings : Settings
    subjects : sequence of int or str, optional
        Default: every subject with regressors in the workspace.
    """
    subjects = [str(int(s)) for s in subjects] if subjects is not None else subjects_with_regressors(settings)
    if not subjects:
        raise FileNotFoundError(f"ROI: no subject has regressors under {settings.workspace / 'regressors'}; run "
                                "`braindiff fit` first.")
    # Regressors first: a subject without them is told to fit them, not that its nsdgeneral mask is missing
    regressors = {s: load_regressors(settings, s) for s in subjects}
    atlases = {s: load_subject_atlas(settings, s) for s in subjects}
    return ROIModels(pipeline=load_pipeline(settings, None), atlases=atlases, regressors=regressors,
                     tier=settings.tier)


def paper_figure(models: ROIModels, regions: Sequence[str], seed: int = 0, settings: Mapping[str, Any] | None = None,
                 cell: int = 192, callback: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The paper's Figure 5/7 grid: one row per subject plus the average, one column per region.

    Parameters
    ----------
    models : ROIModels
    regions : sequence of str
        Columns, e.g. ``PAPER_FIGURES["figure5"]``.
    seed : int, default 0
        The same seed for every cell.
    settings : mapping, optional
        Recipe settings for every cell (see :class:`Recipe`; missing stage-2 fields: ``Stage2Settings()``).
    cell : int, default 192
        Side of each image in the grid, in pixels.
    callback : callable (done, total), optional
        Called after each cell.

    Returns
    -------
    array of shape (height, width, 3), uint8
        The grid with row and column labels; a subject lacking a region gets a grey cell marked "absent".
    """
    from PIL import Image, ImageDraw

    rows = models.subjects + ["average"]
    margin, top = 90, 28
    grid = Image.new("RGB", (margin + cell * len(regions), top + cell * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for c, region in enumerate(regions):
        draw.text((margin + c * cell + 6, 8), region, fill="black")
    done = 0
    for r, subject in enumerate(rows):
        draw.text((6, top + r * cell + cell // 2), "Average" if subject == "average" else f"Sub{subject}",
                  fill="black")
        for c, region in enumerate(regions):
            box = (margin + c * cell, top + r * cell)
            recipe = Recipe(subject=subject, regions={region: 1.0}, seed=seed, settings=dict(settings or {}))
            holders = models.subjects if subject == "average" else [subject]
            if all(region not in models.atlases[s].regions for s in holders):  # the subject(s) lack this region
                draw.rectangle([box, (box[0] + cell - 2, box[1] + cell - 2)], fill=(200, 200, 200))
                draw.text((box[0] + 6, box[1] + cell // 2), "absent", fill="black")
            else:
                image = models.generate(recipe).final[0]
                grid.paste(Image.fromarray(resize_images(image[None], cell - 2)[0]), box)
            done += 1
            if callback is not None:
                callback(done, len(rows) * len(regions))
    return np.asarray(grid)

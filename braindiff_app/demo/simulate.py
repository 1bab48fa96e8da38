"""The demo subject's encoding model: simulated voxels that see the stimulus world.

Each voxel of the visual mask gets a population receptive field (pRF) and a few tuning weights:

* V1, V2, V3 voxels: a Gaussian pRF centred where the anatomy's retinotopic map puts it (jittered per subject),
  with a size growing with eccentricity and along the hierarchy, summing local contrast energy in the area's
  spatial-frequency band (V1 high, V2 middle, V3 low), compressed by a power 0.5 (CSS model),
  plus the mean surface colour and lightness in the pRF (rectified light/dark, red/green and blue/yellow opponent
  channels, each voxel weighting a random mix of them).
* Category voxels (faces: OFA/FFA, places: OPA/PPA/RSC, bodies: EBA): a broad contralateral pRF that sums the
  visible area of their category (faces foveal, bodies parafoveal, places peripheral), plus a weak energy term.
* Other visual-mask voxels: large pRFs with weak energy and object drive and a stronger surface-colour term
  (V4-like).

A trial's beta is ``mean + gain * drive(image) + shared noise + independent noise`` in percent signal change;
shared noise is low-rank (a few trial-wise factors seen by all voxels). The visual field spans 8.4 deg like
NSD's images; pRFs beyond the image get little drive, as in a real subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braindiff_app.demo.anatomy import Anatomy
from braindiff_app.demo.stimuli import CATEGORIES
from braindiff_app.images import resize_images

__all__ = [
    "FIELD_DEG",
    "FEATURE_SIZE",
    "ECC_BANDS",
    "KIND_NAMES",
    "SURFACE_CHANNELS",
    "VoxelModel",
    "ENCODING_MODEL_VERSION",
    "load_voxel_model",
    "StimulusFeatures",
    "make_voxel_model",
    "stimulus_features",
    "voxel_drive",
    "select_voxels",
    "simulate_trials",
    "noise_ceiling",
    "eccentricity_rois",
]

FIELD_DEG = 8.4  # visual angle spanned by an image (NSD: 8.4 deg)
FEATURE_SIZE = 128  # images are analysed at this side, pixels
GRID = 32  # pRFs integrate over a GRID x GRID map of the image
BAND_SIGMAS = (0.75, 1.5, 3.0)  # DoG centre sigmas at FEATURE_SIZE, pixels: V1 high, V2 middle, V3 low SF
ECC_BANDS = (0.5, 1.0, 2.0, 4.0)  # deg; NSD prf-eccrois: ecc0pt5, ecc1, ecc2, ecc4, ecc4+
KIND_NAMES = ("other", "V1", "V2", "V3", "faces", "places", "bodies")
SURFACE_CHANNELS = ("light", "dark", "red", "green", "blue", "yellow")
#: 1: contrast energy and category coverage; 2: plus surface colour. Recorded in a simulation's parameters.json, so a
#: folder simulated by another version is refused rather than resumed with mixed data.
ENCODING_MODEL_VERSION = 2
# Per kind: pRF size (sigma = a + b * ecc, deg), SF band, energy weight, target SNR of a well-driven voxel.
_PRF = {1: (0.15, 0.10), 2: (0.25, 0.15), 3: (0.4, 0.22)}
_SNR = {0: 0.25, 1: 0.8, 2: 0.75, 3: 0.7, 4: 0.65, 5: 0.65, 6: 0.6}
# Surface-colour weight (summed over channels) per kind: early areas about half the SD of the energy term, V4-like
# "other" voxels more. Category voxels see no colour.
_SURFACE = {0: 3.0, 1: 1.5, 2: 1.5, 3: 1.5}
# Category voxels: which category they like and where their pRF sits (eccentricity range, deg; sigma, deg).
_CATEGORY_KIND = {4: ("faces", (0.0, 1.5), 1.5), 5: ("places", (3.0, 7.0), 3.5), 6: ("bodies", (1.0, 4.0), 2.5)}


@dataclass(frozen=True)
class VoxelModel:
    """One simulated subject's voxels (all arrays of length n_voxels, in the order of ``ijk``).

    Attributes
    ----------
    ijk : ndarray of int64, shape (n_voxels, 3)
        Voxel indices in the anatomy grid (the visual mask, C order).
    kind : ndarray of int8
        Index into :data:`KIND_NAMES`.
    x, y, sigma : ndarray of float32
        pRF centre (deg; x right, y up) and size (deg).
    band : ndarray of int8
        Spatial-frequency band of the energy term (0 high, 1 middle, 2 low).
    energy_weight : ndarray of float32
    category_weight : ndarray of float32, shape (n_voxels, len(CATEGORIES))
    surface_weight : ndarray of float32, shape (n_voxels, len(SURFACE_CHANNELS))
    gain : ndarray of float32
        Percent signal change per unit of normalised drive.
    noise_sd : ndarray of float32
        Total trial noise SD, percent signal change.
    mean : ndarray of float32
        Baseline beta, percent signal change.
    loadings : ndarray of float32, shape (n_factors, n_voxels)
        Shared-noise loadings (percent signal change per unit factor).
    drive_mean, drive_scale : ndarray of float32
        Normalisation of the raw drive (set from the reference images, see :func:`make_voxel_model`).
    """

    ijk: np.ndarray
    kind: np.ndarray
    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    band: np.ndarray
    energy_weight: np.ndarray
    category_weight: np.ndarray
    surface_weight: np.ndarray
    gain: np.ndarray
    noise_sd: np.ndarray
    mean: np.ndarray
    loadings: np.ndarray
    drive_mean: np.ndarray
    drive_scale: np.ndarray

    @property
    def n_voxels(self) -> int:
        return len(self.kind)

    @property
    def eccentricity(self) -> np.ndarray:
        """pRF eccentricity, deg."""
        return np.hypot(self.x, self.y)


@dataclass(frozen=True)
class StimulusFeatures:
    """What the simulated brain sees of each image.

    Attributes
    ----------
    energy : ndarray of float32, shape (n_images, 3, GRID, GRID)
        Local contrast energy per spatial-frequency band.
    category : ndarray of float32, shape (n_images, len(CATEGORIES), GRID, GRID)
        Fraction of each grid cell covered by each category.
    surface : ndarray of float32, shape (n_images, len(SURFACE_CHANNELS), GRID, GRID)
        Mean rectified lightness and colour-opponent signals per grid cell, each in [0, 1]: light ``2 max(L - 0.5,
        0)``, dark ``2 max(0.5 - L, 0)``, red/green ``max(+-(R - G), 0)``, blue/yellow ``max(+-(B - (R + G) / 2),
        0)``, with R, G, B in [0, 1] and L their luminance.
    """

    energy: np.ndarray
    category: np.ndarray
    surface: np.ndarray


def stimulus_features(images: np.ndarray, label_maps: np.ndarray) -> StimulusFeatures:
    """Contrast energy, category coverage and surface colour of images.

    Parameters
    ----------
    images : ndarray of uint8, shape (n_images, height, width, 3)
        Resized to FEATURE_SIZE if needed.
    label_maps : ndarray of uint8, shape (n_images, height, width)
        Category label maps (see :func:`braindiff_app.demo.stimuli.render_scene`).

    Returns
    -------
    StimulusFeatures
    """
    from PIL import Image
    from scipy import fft as sfft

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 (n_images, height, width, 3), got {images.dtype} {images.shape}.")
    if label_maps.shape != images.shape[:3]:
        raise ValueError(f"label_maps: expected shape {images.shape[:3]}, got {label_maps.shape}.")
    s = FEATURE_SIZE
    if images.shape[1] != s:
        images = resize_images(images, s, resample="bilinear")
        label_maps = np.stack([np.asarray(Image.fromarray(m).resize((s, s), Image.NEAREST)) for m in label_maps])
    n = len(images)
    block = s // GRID
    pad = 16
    # Difference-of-Gaussians band-pass in the Fourier domain, on edge-padded luminance.
    f = np.fft.fftfreq(s + 2 * pad)
    f2 = f[:, None] ** 2 + np.fft.rfftfreq(s + 2 * pad)[None, :] ** 2
    filters = [np.exp(-2 * np.pi**2 * sd**2 * f2) - np.exp(-2 * np.pi**2 * (2 * sd) ** 2 * f2) for sd in BAND_SIGMAS]
    energy = np.zeros((n, 3, GRID, GRID), np.float32)
    category = np.zeros((n, len(CATEGORIES), GRID, GRID), np.float32)
    surface = np.zeros((n, len(SURFACE_CHANNELS), GRID, GRID), np.float32)
    weights = np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    for start in range(0, n, 256):
        sl = slice(start, start + 256)
        rgb = images[sl].astype(np.float32) / 255.0
        lum = rgb @ (weights * 255.0)
        red_green = rgb[..., 0] - rgb[..., 1]
        blue_yellow = rgb[..., 2] - (rgb[..., 0] + rgb[..., 1]) / 2
        channels = (2 * (lum - 0.5), 2 * (0.5 - lum), red_green, -red_green, blue_yellow, -blue_yellow)
        for c, signal in enumerate(channels):
            surface[sl, c] = np.maximum(signal, 0).reshape(-1, GRID, block, GRID, block).mean(axis=(2, 4))
        lum = np.pad(lum, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        spectrum = sfft.rfft2(lum, workers=-1)
        for b, filt in enumerate(filters):
            dog = sfft.irfft2(spectrum * filt.astype(np.float32), s=lum.shape[1:], workers=-1)[:, pad:-pad, pad:-pad]
            energy[sl, b] = (dog**2).reshape(-1, GRID, block, GRID, block).mean(axis=(2, 4))
        for c in range(len(CATEGORIES)):
            category[sl, c] = (label_maps[sl] == c + 1).reshape(-1, GRID, block, GRID, block).mean(axis=(2, 4))
    return StimulusFeatures(energy, category, surface)


def _grid_deg() -> tuple[np.ndarray, np.ndarray]:
    centres = (np.arange(GRID) + 0.5) / GRID * FIELD_DEG - FIELD_DEG / 2
    return centres[None, :].repeat(GRID, 0), -centres[:, None].repeat(GRID, 1)  # x right, y up


def _prf_weights(x: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian pRF weights over the grid, shape (GRID * GRID, n_voxels), integrating to 1 over the whole plane."""
    gx, gy = _grid_deg()
    cell = (FIELD_DEG / GRID) ** 2
    d2 = (gx.reshape(-1, 1) - x[None]) ** 2 + (gy.reshape(-1, 1) - y[None]) ** 2
    return (np.exp(-d2 / (2 * sigma[None] ** 2)) * cell / (2 * np.pi * sigma[None] ** 2)).astype(np.float32)


def _raw_drive(model: VoxelModel, features: StimulusFeatures, n_targets_batch: int | None = 2048) -> np.ndarray:
    n_images, n_vox = len(features.energy), model.n_voxels
    n_cat, n_surf = len(CATEGORIES), len(SURFACE_CHANNELS)
    maps = np.concatenate([features.energy, features.category, features.surface], axis=1)
    maps = maps.reshape(n_images * (3 + n_cat + n_surf), -1)
    out = np.zeros((n_images, n_vox), np.float32)
    step = n_targets_batch or n_vox
    for start in range(0, n_vox, step):
        sl = slice(start, start + step)
        w = _prf_weights(model.x[sl], model.y[sl], model.sigma[sl])  # (GRID*GRID, batch)
        pooled = np.maximum(maps @ w, 0).reshape(n_images, 3 + n_cat + n_surf, -1)  # (n_images, maps, batch)
        energy = np.take_along_axis(pooled[:, :3], model.band[sl][None, None, :].astype(np.int64), axis=1)[:, 0]
        drive = model.energy_weight[sl] * np.sqrt(energy * 1e3)
        drive += np.einsum("ncv,vc->nv", np.sqrt(pooled[:, 3:3 + n_cat] * 10), model.category_weight[sl])
        drive += np.einsum("ncv,vc->nv", np.sqrt(pooled[:, 3 + n_cat:]), model.surface_weight[sl])
        out[:, sl] = drive
    return out


def voxel_drive(model: VoxelModel, features: StimulusFeatures, n_targets_batch: int | None = 2048) -> np.ndarray:
    """Noise-free responses (percent signal change around the baseline).

    Parameters
    ----------
    model : VoxelModel
    features : StimulusFeatures
    n_targets_batch : int or None, default 2048
        Voxels per chunk (None: all at once).

    Returns
    -------
    ndarray of float32, shape (n_images, n_voxels)
        ``gain * (raw - drive_mean) / drive_scale``.
    """
    raw = _raw_drive(model, features, n_targets_batch)
    return (model.gain * (raw - model.drive_mean) / model.drive_scale).astype(np.float32)


def make_voxel_model(anatomy: Anatomy, reference: StimulusFeatures, seed: int, jitter: float = 1.0,
                     n_factors: int = 8, shared_fraction: float = 0.3) -> VoxelModel:
    """Draw one subject's voxels on the anatomy.

    Parameters
    ----------
    anatomy : Anatomy
    reference : StimulusFeatures
        Images that set the drive normalisation (the shared test images: the same for every subject).
    seed : int
        Subject seed: pRF jitter, tuning, gains and noise levels.
    jitter : float, default 1.0
        Scale of the pRF centre jitter around the anatomical map (1: 0.1 * (1 + ecc) deg SD).
    n_factors : int, default 8
        Shared-noise factors.
    shared_fraction : float, default 0.3
        Part of each voxel's noise variance that is shared.

    Returns
    -------
    VoxelModel
    """
    if not 0 <= shared_fraction < 1:
        raise ValueError(f"shared_fraction: expected a value in [0, 1), got {shared_fraction}.")
    rng = np.random.default_rng([int(seed), 0xB4A1])
    mask = anatomy.nsdgeneral
    ijk = np.argwhere(mask)
    n = len(ijk)
    at = tuple(ijk.T)
    visual = anatomy.rois["prf-visualrois"][at]
    kind = np.zeros(n, np.int8)
    kind[np.isin(visual, (1, 2))] = 1
    kind[np.isin(visual, (3, 4))] = 2
    kind[np.isin(visual, (5, 6))] = 3
    for code, file in ((4, "floc-faces"), (5, "floc-places"), (6, "floc-bodies")):
        kind[(kind == 0) & (anatomy.rois[file][at] > 0)] = code
    hemi = anatomy.hemisphere[at]
    side = np.where(hemi == 2, -1.0, 1.0)  # left hemisphere sees the right field

    x = np.zeros(n)
    y = np.zeros(n)
    sigma = np.zeros(n)
    band = np.full(n, 2, np.int8)
    energy_weight = np.ones(n)
    category_weight = np.zeros((n, len(CATEGORIES)))
    # Early visual areas: the anatomical map, jittered.
    ecc0 = anatomy.eccentricity[at]
    ang0 = np.deg2rad(anatomy.polar_angle[at])
    early = kind >= 1
    early &= kind <= 3
    ecc0 = np.where(early, np.nan_to_num(ecc0), 0)
    x[early] = ecc0[early] * np.cos(ang0[early]) + jitter * rng.normal(0, 0.1, early.sum()) * (1 + ecc0[early])
    y[early] = ecc0[early] * np.sin(ang0[early]) + jitter * rng.normal(0, 0.1, early.sum()) * (1 + ecc0[early])
    for k, (a, b) in _PRF.items():
        sel = kind == k
        sigma[sel] = (a + b * np.hypot(x[sel], y[sel])) * rng.lognormal(0, 0.15, sel.sum())
        band[sel] = k - 1
    # Category voxels: contralateral pRFs at their category's eccentricity, weak energy term.
    for k, (name, (lo, hi), size) in _CATEGORY_KIND.items():
        sel = np.flatnonzero(kind == k)
        ecc = rng.uniform(lo, hi, len(sel))
        theta = rng.uniform(-np.pi / 2, np.pi / 2, len(sel))
        x[sel] = side[sel] * ecc * np.cos(theta)
        y[sel] = ecc * np.sin(theta)
        sigma[sel] = size * rng.lognormal(0, 0.2, len(sel))
        energy_weight[sel] = 0.3
        category_weight[sel] = rng.uniform(0.0, 0.15, (len(sel), len(CATEGORIES)))
        category_weight[sel, CATEGORIES.index(name)] = 1.0
    # Other visual voxels: big contralateral pRFs, low SF energy and some object drive.
    sel = np.flatnonzero(kind == 0)
    ecc = rng.uniform(0.5, 8.0, len(sel))
    theta = rng.uniform(-np.pi / 2, np.pi / 2, len(sel))
    x[sel] = side[sel] * ecc * np.cos(theta)
    y[sel] = ecc * np.sin(theta)
    sigma[sel] = rng.uniform(1.5, 4.0, len(sel))
    category_weight[sel, CATEGORIES.index("objects")] = rng.uniform(0, 0.5, len(sel))

    # Surface colour: each voxel a random mix of the channels (own stream, so pRFs and noise match older subjects).
    colour_rng = np.random.default_rng([int(seed), 0xC0102])
    surface_weight = colour_rng.dirichlet(np.full(len(SURFACE_CHANNELS), 0.5), n)
    surface_weight *= np.array([_SURFACE.get(int(k), 0.0) for k in kind])[:, None]

    noise_sd = 1.5 * rng.lognormal(0, 0.25, n)
    snr = np.array([_SNR[int(k)] for k in kind]) * rng.lognormal(0, 0.2, n)
    factors = rng.normal(0, 1, (n_factors, n))
    factors *= np.sqrt(shared_fraction) * noise_sd / np.sqrt((factors**2).sum(0))
    model = VoxelModel(
        ijk=ijk.astype(np.int64), kind=kind, x=x.astype(np.float32), y=y.astype(np.float32),
        sigma=np.maximum(sigma, 0.05).astype(np.float32), band=band, energy_weight=energy_weight.astype(np.float32),
        category_weight=category_weight.astype(np.float32), surface_weight=surface_weight.astype(np.float32),
        gain=(snr * noise_sd).astype(np.float32),
        noise_sd=noise_sd.astype(np.float32), mean=rng.normal(0.5, 0.5, n).astype(np.float32),
        loadings=factors.astype(np.float32), drive_mean=np.zeros(n, np.float32), drive_scale=np.ones(n, np.float32),
    )
    # Normalise: per voxel, centre on the reference mean; per kind, scale so the well-driven voxels (90th
    # percentile of the drive SD) reach their target SNR. Poorly placed pRFs keep weak signals.
    raw = _raw_drive(model, reference)
    sd = raw.std(axis=0)
    scale = np.ones(n, np.float32)
    for k in range(len(KIND_NAMES)):
        sel = kind == k
        if sel.any():
            scale[sel] = max(float(np.percentile(sd[sel], 90)), 1e-6)
    return _replace(model, drive_mean=raw.mean(axis=0).astype(np.float32), drive_scale=scale)


def load_voxel_model(path) -> VoxelModel:
    """A subject's saved :class:`VoxelModel` (``braindiff_simulation/subjXX_voxels.npz``).

    Raises
    ------
    ValueError
        The file lacks fields of this version's model (written by an older braindiff: simulate again).
    """
    from dataclasses import fields

    with np.load(path, allow_pickle=False) as npz:
        missing = [f.name for f in fields(VoxelModel) if f.name not in npz.files]
        if missing:
            raise ValueError(f"{path}: simulated voxels without {', '.join(missing)} (written by an older braindiff, "
                             f"encoding model version < {ENCODING_MODEL_VERSION}); run `braindiff demo simulate` "
                             "into a new folder.")
        return VoxelModel(**{f.name: npz[f.name] for f in fields(VoxelModel)})


def select_voxels(model: VoxelModel, index: np.ndarray) -> VoxelModel:
    """The model restricted to some voxels (shared-noise loadings keep their factors).

    Parameters
    ----------
    model : VoxelModel
    index : ndarray of int or bool, shape (n_selected,) or (n_voxels,)

    Returns
    -------
    VoxelModel
    """
    from dataclasses import fields

    index = np.asarray(index)
    if index.dtype == bool and index.shape != (model.n_voxels,):
        raise ValueError(f"index: expected a boolean mask of shape ({model.n_voxels},), got {index.shape}.")
    return _replace(model, **{f.name: (getattr(model, f.name)[:, index] if f.name == "loadings"
                                       else getattr(model, f.name)[index]) for f in fields(model)})


def _replace(model: VoxelModel, **changes) -> VoxelModel:
    from dataclasses import replace

    return replace(model, **changes)


def simulate_trials(model: VoxelModel, drive: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy single-trial betas.

    Parameters
    ----------
    model : VoxelModel
    drive : ndarray of float32, shape (n_trials, n_voxels)
        Noise-free responses of each trial's image (rows repeat for repeated images).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of float32, shape (n_trials, n_voxels)
        Percent signal change: ``mean + drive + shared + independent noise``.
    """
    n_trials = len(drive)
    shared_var = (model.loadings**2).sum(axis=0)
    own_sd = np.sqrt(np.maximum(model.noise_sd**2 - shared_var, 0))
    factors = rng.normal(0, 1, (n_trials, model.loadings.shape[0])).astype(np.float32)
    noise = rng.normal(0, 1, (n_trials, model.n_voxels)).astype(np.float32) * own_sd
    return (model.mean + drive + factors @ model.loadings + noise).astype(np.float32)


def noise_ceiling(betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NSD's noise ceiling from repeated trials.

    ``ncsnr = sqrt(max(signal variance, 0)) / noise SD``, with the noise variance the mean over images of the
    variance across repetitions, and ``NC = 100 * ncsnr**2 / (ncsnr**2 + 1 / n_reps)`` for averages of n_reps.

    Parameters
    ----------
    betas : ndarray, shape (n_images, n_reps, n_voxels)

    Returns
    -------
    ncsnr : ndarray of float, shape (n_voxels,)
    nc : ndarray of float, shape (n_voxels,)
        Percent of variance of the repetition-averaged response that the signal can explain.
    """
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 3 or betas.shape[1] < 2:
        raise ValueError(f"betas: expected shape (n_images, n_reps >= 2, n_voxels), got {betas.shape}.")
    n_reps = betas.shape[1]
    noise_var = betas.var(axis=1, ddof=1).mean(axis=0)
    signal_var = betas.mean(axis=1).var(axis=0, ddof=1) - noise_var / n_reps
    ncsnr = np.sqrt(np.maximum(signal_var, 0) / np.maximum(noise_var, 1e-12))
    return ncsnr, 100 * ncsnr**2 / (ncsnr**2 + 1 / n_reps)


def eccentricity_rois(model: VoxelModel) -> np.ndarray:
    """NSD prf-eccrois labels of V1-V3 voxels from their pRF eccentricity (0 for other voxels).

    Returns
    -------
    ndarray of int8, shape (n_voxels,)
        1 ecc0pt5 (< 0.5 deg), 2 ecc1, 3 ecc2, 4 ecc4, 5 ecc4+ (> 4 deg).
    """
    labels = (np.digitize(model.eccentricity, ECC_BANDS) + 1).astype(np.int8)
    return np.where((model.kind >= 1) & (model.kind <= 3), labels, 0).astype(np.int8)

"""Pixel-level metrics: PixCorr and SSIM (two named variants), with the resizing the reference applies.

Both metrics compare each reconstruction with its own ground-truth image at the ground truth's resolution
(425 x 425 for NSD): reconstructions are resized there with PIL's bicubic filter, as the reference's
``Image.resize((425, 425))`` does (:func:`braindiff_app.images.resize_images`). SSIM is scikit-image's
``structural_similarity`` (Gaussian weights, sigma 1.5, population covariances, ``data_range=1``).

SSIM variants
-------------
``"2d"`` (metric ``SSIM``)
    The standard SSIM of Wang et al. (2004) on the grayscale image: an 11-tap Gaussian window (sigma 1.5,
    truncated at 3.5 sigma) slid over both axes, population covariances, ``data_range=1``, the border of half a
    window left out of the mean.
``"reference"`` (metric ``SSIM-ref``)
    What the reference's call ``structural_similarity(gray_rec, gray_gt, multichannel=True, ...)`` computes in
    scikit-image < 0.19 up to the versions that still honour ``multichannel``: with a 2-D grayscale image the
    last axis (image columns) is taken as colour channels, so SSIM becomes a 1-D SSIM down each column (the
    window slides along rows only), averaged over the columns. Newer scikit-image silently ignores the
    ``multichannel`` keyword, so the same call there gives the ``"2d"`` value. The paper's numbers were made
    with the per-column behaviour, which today's scikit-image gives with ``channel_axis=-1``.
"""

from __future__ import annotations

import numpy as np

from braindiff_app.config import check_in_allowed
from braindiff_app.images import check_images, resize_images

__all__ = [
    "SSIM_VARIANTS",
    "to_grayscale",
    "pixcorr",
    "ssim",
    "ssim_single",
]

SSIM_VARIANTS = ("2d", "reference")
# ITU-R 601-ish luminance weights used by scikit-image's rgb2gray (the reference's conversion).
_GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])
_SSIM_TRUNCATE = 3.5  # scikit-image's Gaussian window: 2 * int(3.5 * sigma + 0.5) + 1 taps (11 at sigma 1.5)


def _check_pair(ground_truth: np.ndarray, reconstructions: np.ndarray) -> None:
    check_images(ground_truth, "ground_truth")
    check_images(reconstructions, "reconstructions")
    if len(ground_truth) != len(reconstructions):
        raise ValueError(f"reconstructions: expected one per ground-truth image ({len(ground_truth)}), "
                         f"got {len(reconstructions)}.")


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """Luminance of RGB images in [0, 1] (scikit-image's ``rgb2gray`` weights 0.2125, 0.7154, 0.0721).

    Parameters
    ----------
    images : array of shape (..., 3), uint8 (0-255) or float in [0, 1]

    Returns
    -------
    array of shape (...), float64 in [0, 1]
    """
    values = np.asarray(images, dtype=np.float64)
    if np.asarray(images).dtype == np.uint8:
        values = values / 255.0
    return values @ _GRAY_WEIGHTS


def _at_ground_truth_size(ground_truth: np.ndarray, reconstructions: np.ndarray,
                          size: int | None) -> tuple[np.ndarray, np.ndarray]:
    _check_pair(ground_truth, reconstructions)
    target = ground_truth.shape[1:3] if size is None else (int(size), int(size))
    return resize_images(ground_truth, target), resize_images(reconstructions, target)


def pixcorr(ground_truth: np.ndarray, reconstructions: np.ndarray, size: int | None = None) -> np.ndarray:
    """PixCorr: Pearson correlation over all RGB pixel values of each reconstruction and its ground truth.

    Parameters
    ----------
    ground_truth : array of shape (n_images, height, width, 3), uint8
        The seen images (NSD: 425 x 425).
    reconstructions : array of shape (n_images, h, w, 3), uint8
        Resized (PIL bicubic) to the comparison size when it differs.
    size : int or None, default None
        Side of the comparison in pixels; None means the ground truth's own size (the reference: 425).

    Returns
    -------
    array of shape (n_images,), float32
        One correlation per trial (NaN for a constant image).
    """
    gt, rec = _at_ground_truth_size(ground_truth, reconstructions, size)
    a = gt.reshape(len(gt), -1).astype(np.float64)
    b = rec.reshape(len(rec), -1).astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((a * b).sum(axis=1) / denom).astype(np.float32)


def ssim_single(image_a: np.ndarray, image_b: np.ndarray, variant: str = "2d", sigma: float = 1.5,
                data_range: float = 1.0) -> float:
    """SSIM of two grayscale images with Gaussian weights (see the module notes for the two variants).

    Parameters
    ----------
    image_a, image_b : array of shape (height, width), float
        Grayscale images in units of ``data_range``.
    variant : str in {"2d", "reference"}, default "2d"
        ``"2d"``: standard 2-D SSIM. ``"reference"``: per-column 1-D SSIM averaged over columns (the
        reference's ``multichannel=True`` call on a 2-D image in old scikit-image).
    sigma : float, default 1.5
        Gaussian window's standard deviation in pixels (the window spans 2 * int(3.5 * sigma + 0.5) + 1 taps).
    data_range : float, default 1.0
        Dynamic range of the values; sets the stabilising constants (0.01 * range)^2 and (0.03 * range)^2.

    Returns
    -------
    float
        Mean SSIM over the image, leaving out a border of half a window along each filtered axis.
    """
    check_in_allowed(variant, SSIM_VARIANTS, "variant")
    a = np.asarray(image_a, dtype=np.float64)
    b = np.asarray(image_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"image_a, image_b: expected two 2-D arrays of the same shape, got {a.shape} and {b.shape}.")
    pad = int(_SSIM_TRUNCATE * sigma + 0.5)
    filtered_axes = (0, 1) if variant == "2d" else (0,)
    if any(a.shape[ax] < 2 * pad + 1 for ax in filtered_axes):
        raise ValueError(f"image_a: SSIM with sigma {sigma} needs at least {2 * pad + 1} pixels along each "
                         f"filtered axis, got shape {a.shape}.")
    from skimage.metrics import structural_similarity

    # "reference": the columns as channels, so the Gaussian window slides down each column only (1-D SSIM per
    # column, each column's mean leaving out half a window at both ends, then the mean over columns).
    channels = {"channel_axis": -1} if variant == "reference" else {}
    return float(structural_similarity(a, b, gaussian_weights=True, sigma=sigma,
                                       use_sample_covariance=False, data_range=data_range, **channels))


def ssim(ground_truth: np.ndarray, reconstructions: np.ndarray, variant: str = "2d",
         size: int | None = None) -> np.ndarray:
    """SSIM of each reconstruction against its ground truth, on grayscale images (sigma 1.5, data_range 1).

    Parameters
    ----------
    ground_truth : array of shape (n_images, height, width, 3), uint8
    reconstructions : array of shape (n_images, h, w, 3), uint8
        Resized (PIL bicubic) to the comparison size when it differs.
    variant : str in {"2d", "reference"}, default "2d"
        ``"2d"``: the standard SSIM (metric ``SSIM``). ``"reference"``: the per-column behaviour of the
        reference's call (metric ``SSIM-ref``); see the module notes.
    size : int or None, default None
        Side of the comparison in pixels; None means the ground truth's own size.

    Returns
    -------
    array of shape (n_images,), float32
    """
    check_in_allowed(variant, SSIM_VARIANTS, "variant")
    gt, rec = _at_ground_truth_size(ground_truth, reconstructions, size)
    values = [ssim_single(to_grayscale(r), to_grayscale(g), variant=variant) for g, r in zip(gt, rec, strict=True)]
    return np.asarray(values, dtype=np.float32)

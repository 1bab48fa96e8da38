"""Pixel-level metrics: PixCorr and SSIM (two named variants), with the resizing the reference applies.

Both metrics compare each reconstruction with its own ground-truth image at the ground truth's resolution
(425 x 425 for NSD): reconstructions are resized there with PIL's bicubic filter, as the reference's
``Image.resize((425, 425))`` does (:func:`braindiff_app.images.resize_images`). SSIM is what scikit-image's
``structural_similarity`` computes (Gaussian weights, sigma 1.5, population covariances, ``data_range=1``), written
out for a stack of images at once (the tests compare it with scikit-image called directly).

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
_SSIM_CHUNK_PIXELS = 2**18  # pixels per SSIM stack: 2 MB per float64 array (64 demo images, 1 NSD image), in cache


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
    return float(_ssim_stack(a[None], b[None], variant, sigma, data_range)[0])


def _ssim_stack(a: np.ndarray, b: np.ndarray, variant: str, sigma: float = 1.5,
                data_range: float = 1.0) -> np.ndarray:
    """SSIM of each pair of a stack of grayscale images, shape (n, height, width) float64 -> (n,) float64.

    scikit-image's ``structural_similarity`` (Gaussian weights, population covariances), computed for the whole
    stack at once: the same separable Gaussian filter (scipy's, mode "reflect", truncated at 3.5 sigma) along the
    filtered axes, the same SSIM map, the mean over it leaving out half a window along each filtered axis. For
    "reference" only the rows are filtered, so each column is a 1-D SSIM and the mean over the cropped map is the
    mean over the columns of their means (what scikit-image's loop over the columns as channels computes, one
    column at a time: the reason this is written out here; ``bench/ssim.py``: 114 times faster at 64 px, 11 at
    425). The means are summed in scikit-image's order, so the float64 values are the same to the bit.
    """
    from scipy.ndimage import gaussian_filter1d

    pad = int(_SSIM_TRUNCATE * sigma + 0.5)
    filtered_axes = (1, 2) if variant == "2d" else (1,)
    if any(a.shape[ax] < 2 * pad + 1 for ax in filtered_axes):
        raise ValueError(f"image_a: SSIM with sigma {sigma} needs at least {2 * pad + 1} pixels along each "
                         f"filtered axis, got shape {a.shape[1:]}.")

    def smooth(x: np.ndarray) -> np.ndarray:
        for axis in filtered_axes:
            x = gaussian_filter1d(x, sigma, axis=axis, mode="reflect", truncate=_SSIM_TRUNCATE)
        return x

    ux, uy = smooth(a), smooth(b)
    vx = smooth(a * a) - ux * ux
    vy = smooth(b * b) - uy * uy
    vxy = smooth(a * b) - ux * uy
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    rows = slice(pad, s_map.shape[1] - pad)
    if variant == "2d":
        return s_map[:, rows, pad:s_map.shape[2] - pad].mean(axis=(1, 2))
    columns = np.ascontiguousarray(s_map[:, rows].transpose(0, 2, 1))  # (n, width, rows): one column per row
    return columns.mean(axis=-1).mean(axis=-1)  # each column's mean, then their mean, as scikit-image sums


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
    chunk = max(1, _SSIM_CHUNK_PIXELS // (gt.shape[1] * gt.shape[2]))
    values = [_ssim_stack(to_grayscale(rec[i:i + chunk]), to_grayscale(gt[i:i + chunk]), variant)
              for i in range(0, len(gt), chunk)]
    return np.concatenate(values).astype(np.float32)

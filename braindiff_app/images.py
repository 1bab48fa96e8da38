"""Batches of RGB images as arrays: the one check and the one resize every layer uses.

Images are (n_images, height, width, 3) uint8 at the boundaries. This module sits below models/ and
evaluation/ (like config.py) so both can import it without importing each other.
"""

from __future__ import annotations

import numpy as np

from braindiff_app.config import check_in_allowed

__all__ = ["RESAMPLE_FILTERS", "check_images", "resize_images"]

RESAMPLE_FILTERS = ("bicubic", "bilinear", "nearest", "torch-bilinear")


def check_images(images: np.ndarray, name: str, allow_empty: bool = False) -> np.ndarray:
    """Check a batch of RGB images: array of shape (n_images, height, width, 3), uint8.

    Parameters
    ----------
    images : array of shape (n_images, height, width, 3), uint8
    name : str
        Argument name used in error messages.
    allow_empty : bool, default False
        Accept n_images == 0.

    Returns
    -------
    array
        ``images`` itself.

    Raises
    ------
    TypeError
        If ``images`` is not a uint8 numpy array.
    ValueError
        If its shape is not (n_images, height, width, 3) with n_images >= 1 (>= 0 with ``allow_empty``).
    """
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of shape (n_images, height, width, 3), uint8; "
                        f"got {type(images).__name__}.")
    if images.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8 images (0-255), got dtype {images.dtype}; convert with "
                        "np.clip(x * 255, 0, 255).astype(np.uint8) for floats in [0, 1].")
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] < (0 if allow_empty else 1):
        raise ValueError(f"{name}: expected shape (n_images, height, width, 3), got {images.shape}.")
    return images


def _torch_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    import torch
    from torch.nn import functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def resize_images(images: np.ndarray, size: int | tuple[int, int], resample: str = "bicubic") -> np.ndarray:
    """Resize uint8 images, rounding back to uint8.

    Parameters
    ----------
    images : array of shape (n_images, height, width, 3), uint8
        n_images may be 0.
    size : int or (int, int)
        Target side, or (height, width), in pixels. Images already at that size are returned unchanged
        (the same array, not a copy).
    resample : str in {"bicubic", "bilinear", "nearest", "torch-bilinear"}, default "bicubic"
        ``"bicubic"``: PIL's bicubic filter, the default of ``Image.resize`` (the reference's PixCorr/SSIM
        resize and its VDVAE -> Versatile Diffusion upsampling).
        ``"bilinear"``: PIL's bilinear filter, what torchvision's ``resize`` uses on PIL images (the evaluation
        networks' inputs in the reference).
        ``"nearest"``: PIL's nearest neighbour.
        ``"torch-bilinear"``: ``torch.nn.functional.interpolate(mode="bilinear", antialias=True)`` on the CPU,
        the VDVAE's input resize (it differs from PIL's bilinear by one grey level in about 1-7 % of pixels;
        kept so that VDVAE latents do not move).

    Returns
    -------
    array of shape (n_images, height, width, 3), uint8
        ``(height, width)`` = ``size``.
    """
    check_in_allowed(resample, RESAMPLE_FILTERS, "resample")
    check_images(images, "images", allow_empty=True)
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if height < 1 or width < 1:
        raise ValueError(f"size: expected a positive number of pixels, got {size}.")
    if images.shape[1:3] == (height, width):
        return images
    if resample == "torch-bilinear":
        return _torch_bilinear(images, height, width)
    from PIL import Image

    pil_filter = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[resample]
    out = np.empty((len(images), height, width, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((width, height), pil_filter))
    return out

"""The flatmap a person paints on: a cortical flatmap image and its pixel -> voxel lookup.

The demo tier's flatmap is committed in ``assets/demo/anatomy/`` (written by ``braindiff demo anatomy``); an NSD
subject's is built from its surfaces by :mod:`braindiff_app.data.nsd_flatmap`. Both come back as a :class:`Flatmap`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from braindiff_app.config import DEMO_ANATOMY_DIR

__all__ = ["Flatmap", "load_flatmap", "draw_values"]


@dataclass(frozen=True)
class Flatmap:
    """The flatmap base image and its pixel -> voxel lookup.

    Attributes
    ----------
    image : ndarray of uint8, shape (height, width, 4)
        Curvature shading with ROI outlines and names (RGBA; transparent off the cortex).
    pixel_voxel : ndarray of int32, shape (height, width)
        Flat (C-order) index into the anatomy grid of the voxel under each pixel, -1 off the cortex or off the grid.
    """

    image: np.ndarray
    pixel_voxel: np.ndarray


def load_flatmap(folder: str | os.PathLike | None = None) -> Flatmap:
    """Read the committed flatmap image and pixel -> voxel lookup (no pycortex needed)."""
    from PIL import Image

    folder = Path(folder or DEMO_ANATOMY_DIR)
    for name in ("flatmap.png", "flatmap_lookup.npz"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name}: demo flatmap not found; build it with `braindiff demo anatomy`.")
    image = np.asarray(Image.open(folder / "flatmap.png").convert("RGBA"))
    with np.load(folder / "flatmap_lookup.npz", allow_pickle=False) as npz:
        return Flatmap(image=image, pixel_voxel=npz["pixel_voxel"])


def draw_values(image: np.ndarray, lookup: np.ndarray, values: np.ndarray, limit: float | None = None,
                opacity: float = 0.85) -> np.ndarray:
    """Per-voxel values drawn on a flatmap in a diverging colour map (blue negative, white zero, red positive).

    Parameters
    ----------
    image : array of shape (height, width, 3 or 4), uint8
        The flatmap base image (curvature and outlines).
    lookup : array of shape (height, width), int
        Voxel index (into ``values``) under each pixel, -1 where none (``roi.load_subject_flatmap``'s).
    values : array of shape (n_voxels,)
        E.g. a predicted response in z-scored units.
    limit : float, optional
        The value drawn fully saturated (symmetric); default the 98th percentile of ``|values|``.
    opacity : float, default 0.85
        Weight of the colour over the base image on voxel pixels.

    Returns
    -------
    array of shape (height, width, 3), uint8
    """
    values = np.asarray(values, dtype=np.float64)
    lookup = np.asarray(lookup)
    if values.ndim != 1 or lookup.shape != image.shape[:2]:
        raise ValueError(f"values, lookup: expected (n_voxels,) values and a lookup of the image's shape "
                         f"{image.shape[:2]}, got {values.shape} and {lookup.shape}.")
    if lookup.max() >= len(values):
        raise ValueError(f"values: the lookup names voxel {int(lookup.max())}, values has {len(values)}.")
    if not np.isfinite(values).all():
        raise ValueError("values: hold NaN or infinite values.")
    if limit is None:
        limit = float(np.percentile(np.abs(values), 98)) if len(values) else 1.0
    limit = limit if limit > 0 else 1.0
    on = lookup >= 0
    t = np.clip(np.where(on, values[np.clip(lookup, 0, None)], 0.0) / limit, -1, 1)[..., None]  # (h, w, 1)
    white, red, blue = np.array([247.0, 247, 247]), np.array([178.0, 24, 43]), np.array([33.0, 102, 172])
    colour = np.where(t >= 0, white + t * (red - white), white - t * (blue - white))
    base = image[..., :3].astype(np.float64)
    out = np.where(on[..., None], (1 - opacity) * base + opacity * colour, base)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)

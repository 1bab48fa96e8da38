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

__all__ = ["Flatmap", "load_flatmap"]


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

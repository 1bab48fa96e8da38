"""The demo subject's flatmap figure: ROIs, and the simulated retinotopic map (eccentricity, polar angle)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from braindiff_app.atomic import atomic_path
from braindiff_app.data.flatmap import load_flatmap
from braindiff_app.demo.anatomy import load_anatomy

__all__ = ["flatmap_values", "plot_demo_flatmap"]


def flatmap_values(pixel_voxel: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Paint a voxel volume onto the flatmap.

    Parameters
    ----------
    pixel_voxel : ndarray of int, shape (height, width)
        Flat voxel index per pixel (-1 none), from :func:`braindiff_app.demo.anatomy.load_flatmap`.
    volume : ndarray, shape (x, y, z)
        Values on the anatomy grid.

    Returns
    -------
    ndarray of float64, shape (height, width)
        The value of each pixel's voxel; NaN off the cortex.
    """
    if pixel_voxel.max(initial=-1) >= volume.size:
        raise ValueError(f"volume: expected a volume of at least {pixel_voxel.max() + 1} voxels, got {volume.shape}.")
    out = np.full(pixel_voxel.shape, np.nan)
    ok = pixel_voxel >= 0
    out[ok] = volume.ravel()[pixel_voxel[ok]]
    return out


def plot_demo_flatmap(out: str | os.PathLike, anatomy_dir: str | os.PathLike | None = None, dpi: int = 90) -> Path:
    """Save a three-panel figure: ROI outlines, eccentricity and polar angle of V1-V3 on the flatmap.

    Parameters
    ----------
    out : path
        PNG file to write.
    anatomy_dir : path, optional
        Demo anatomy folder (default ``assets/demo/anatomy``).
    dpi : int, default 110

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    anatomy = load_anatomy(anatomy_dir)
    flatmap = load_flatmap(anatomy_dir)
    ecc = flatmap_values(flatmap.pixel_voxel, anatomy.eccentricity)
    angle = flatmap_values(flatmap.pixel_voxel, anatomy.polar_angle)
    # Outline and name pixels (coloured or pure white) of the base image, to redraw above the maps.
    rgb = flatmap.image[..., :3].astype(int)
    marked = (rgb.max(-1) - rgb.min(-1) > 40) | (rgb.min(-1) >= 250) | (rgb.max(-1) <= 10)
    outlines = flatmap.image.copy()
    outlines[..., 3] = np.where(marked & (flatmap.image[..., 3] > 0), 255, 0)
    fig, axes = plt.subplots(1, 3, figsize=(18, 6.4))
    panels = (
        ("ROIs (S1, drawn on its flatmap); white: nsdgeneral-like mask", None, None, None),
        ("eccentricity (deg)", np.log2(1 + ecc), "turbo", (0, np.log2(17))),
        ("polar angle (deg; 0 = right horizontal meridian, 90 = up)", angle, "hsv", (-180, 180)),
    )
    for ax, (title, values, cmap, limits) in zip(axes, panels, strict=True):
        ax.imshow(flatmap.image)
        if values is not None:
            shown = ax.imshow(values, cmap=cmap, vmin=limits[0], vmax=limits[1], alpha=0.85, interpolation="nearest")
            bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            if cmap == "turbo":
                ticks = np.array([0, 0.5, 1, 2, 4, 8, 16])
                bar.set_ticks(np.log2(1 + ticks), labels=[f"{t:g}" for t in ticks])
            else:
                bar.set_ticks([-180, -90, 0, 90, 180])
            ax.imshow(outlines)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    fig.suptitle("Demo subject: pycortex S1 anatomy with a simulated retinotopic map "
                 "(left hemisphere on the left; it sees the right visual field)", fontsize=11)
    fig.tight_layout()
    path = Path(out)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path

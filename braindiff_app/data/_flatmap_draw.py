"""Rasterise a flat cortical patch: curvature shading, ROI outlines and names, and a pixel -> voxel lookup."""

from __future__ import annotations

import numpy as np

ROI_COLORS = {
    "V1": (230, 60, 60), "V2": (240, 150, 40), "V3": (230, 220, 60), "OFA": (60, 200, 230), "FFA": (40, 120, 240),
    "OPA": (120, 230, 120), "PPA": (40, 170, 80), "RSC": (20, 120, 60), "EBA": (220, 90, 220),
    # NSD subjects' outlines use the atlas's region names.
    "hV4": (160, 90, 230), "faces": (40, 120, 240), "words": (250, 110, 170), "places": (40, 170, 80),
    "bodies": (220, 90, 220),
}


def _pixel_grid(flat: np.ndarray, keep: np.ndarray, width: int, pad: float):
    lo = flat[keep].min(0) - pad
    hi = flat[keep].max(0) + pad
    scale = (hi[0] - lo[0]) / width  # flat units per pixel
    height = int(np.ceil((hi[1] - lo[1]) / scale))
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    xy = np.stack([lo[0] + (cols + 0.5) * scale, hi[1] - (rows + 0.5) * scale], axis=-1)  # y up
    return xy.reshape(-1, 2), (height, width), scale


def draw_flatmap(flat: np.ndarray, polys: np.ndarray, curvature: np.ndarray, labels: np.ndarray,
                 names: tuple[str, ...], vertex_voxel: np.ndarray, region: np.ndarray, hemisphere: np.ndarray,
                 width: int = 900, pad: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw the part of a flatmap around ``region`` and map its pixels to voxels.

    Parameters
    ----------
    flat : ndarray of float, shape (n_vertices, 2)
        Flat coordinates (mm-like units).
    polys : ndarray of int, shape (n_triangles, 3)
        Triangles of the flat patch (vertices not in any triangle are off the patch).
    curvature : ndarray of float, shape (n_vertices,)
    labels : ndarray of int, shape (n_vertices,)
        0 unlabelled, ``i + 1`` for ``names[i]``.
    names : tuple of str
        ROI names (colours from ``ROI_COLORS``).
    vertex_voxel : ndarray of int, shape (n_vertices,)
        Voxel flat index of each vertex (-1 none).
    region : ndarray of bool, shape (n_vertices,)
        The vertices to frame (the visual mask); its outline is drawn in white.
    hemisphere : ndarray of int, shape (n_vertices,)
        Hemisphere of each vertex (ROI names are placed once per hemisphere).
    width : int, default 900
        Image width in pixels.
    pad : float, default 12
        Margin around the region, flat units.

    Returns
    -------
    image : ndarray of uint8, shape (height, width, 4)
    pixel_voxel : ndarray of int64, shape (height, width)
    """
    from PIL import Image, ImageDraw, ImageFont
    from scipy import ndimage
    from scipy.spatial import cKDTree

    on_patch = np.unique(polys)
    xy, shape, scale = _pixel_grid(flat, region, width, pad)
    tree = cKDTree(flat[on_patch])
    edge = np.median(np.linalg.norm(flat[polys[:, 0]] - flat[polys[:, 1]], axis=1))
    dist, nearest = tree.query(xy, distance_upper_bound=max(2.5 * edge, 1.5 * scale))
    valid = np.isfinite(dist)
    vertex = np.full(len(xy), -1, np.int64)
    vertex[valid] = on_patch[nearest[valid]]
    vertex = vertex.reshape(shape)
    valid = valid.reshape(shape)

    pixel_voxel = np.where(valid, vertex_voxel[np.maximum(vertex, 0)], -1)
    label = np.where(valid, labels[np.maximum(vertex, 0)], -1)
    in_region = valid & region[np.maximum(vertex, 0)]
    hemi = np.where(valid, hemisphere[np.maximum(vertex, 0)], 0)

    # Curvature shading: gyri light, sulci dark, softened.
    curv = np.where(valid, curvature[np.maximum(vertex, 0)], 0.0)
    curv = ndimage.gaussian_filter(curv, 1.0)
    grey = np.clip(150 - 60 * np.tanh(curv * 4), 0, 255)
    rgba = np.zeros((*shape, 4), np.uint8)
    rgba[..., :3] = grey[..., None].astype(np.uint8)
    rgba[..., 3] = np.where(valid, 255, 0)

    def outline(mask: np.ndarray) -> np.ndarray:
        return mask & ~ndimage.binary_erosion(mask, iterations=2)

    for i, name in enumerate(names):
        ring = outline(label == i + 1)
        rgba[ring, :3] = ROI_COLORS.get(name, (255, 255, 255))
    rgba[outline(in_region), :3] = 255

    image = Image.fromarray(rgba, "RGBA")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, width // 60))
    for i, name in enumerate(names):
        for h in np.unique(hemi[hemi > 0]):
            rows, cols = np.nonzero((label == i + 1) & (hemi == h))
            if len(rows) < 40:
                continue
            draw.text((cols.mean(), rows.mean()), name, fill=(255, 255, 255, 255), font=font, anchor="mm",
                      stroke_width=2, stroke_fill=(0, 0, 0, 255))
    return np.asarray(image), pixel_voxel

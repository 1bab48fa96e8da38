"""The ROI studio's flatmap pictures: what the canvas, the pattern panel and the region readout show.

The committed and cached flatmaps (:func:`braindiff_app.roi.load_subject_flatmap`) carry outlines and small names
drawn when they were built; the studio draws its own over their curvature shading (:func:`curvature_base`):

- region outlines from the subject's atlas (the voxels under each pixel, through the same pixel -> voxel lookup
  the brush uses), in a colour-blind-safe palette (:data:`REGION_COLOURS`, Okabe & Ito 2008), named with the
  region sliders' names at :data:`LABEL_FONT_PX`;
- eccentricity band outlines (black) on request;
- orientation: left and right hemisphere, dorsal and ventral, anterior and posterior. Both flatmap builders follow
  pycortex's layout (left hemisphere on the left, occipital poles meeting in the middle, dorsal up); the
  hemispheres are split at the emptiest column near the middle.

No gradio here: plain arrays in, arrays and strings out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braindiff_app.data.atlas import CATEGORY_REGIONS, ECCENTRICITY_REGIONS, REGION_LABELS, VISUAL_REGIONS, ROIAtlas
from braindiff_app.ui import text

__all__ = ["PATTERN_COLOURS", "OKABE_ITO", "REGION_COLOURS", "ECCENTRICITY_COLOUR", "LABEL_FONT_PX",
           "brush_colour", "curvature_base", "StudioMap", "studio_map", "pattern_overlay", "painted_layer",
           "painted_mask", "region_at"]

#: Painted and pattern voxels: positive weights red, negative blue (the brush takes the same colours).
PATTERN_COLOURS = {1: (220, 40, 40), -1: (40, 90, 230)}
#: Okabe & Ito's colour-blind-safe palette (black left out: it marks the eccentricity bands).
OKABE_ITO = {"vermillion": (213, 94, 0), "sky blue": (86, 180, 233), "yellow": (240, 228, 66),
             "reddish purple": (204, 121, 167), "bluish green": (0, 158, 115), "blue": (0, 114, 178),
             "orange": (230, 159, 0)}
#: Outline colour of each region slider's region (V1, V2, V3 the three most distinct under deuteranopia).
REGION_COLOURS = {"V1": OKABE_ITO["vermillion"], "V2": OKABE_ITO["sky blue"], "V3": OKABE_ITO["yellow"],
                  "hV4": OKABE_ITO["reddish purple"], "faces": (255, 255, 255), "words": OKABE_ITO["bluish green"],
                  "places": OKABE_ITO["blue"], "bodies": OKABE_ITO["orange"]}
ECCENTRICITY_COLOUR = (0, 0, 0)
#: Region names on the flatmap, in flatmap pixels (the canvas draws the 900-pixel-wide map at about 0.55-0.8x).
LABEL_FONT_PX = 26
_NOTE_FONT_PX = 22
_MIN_LABEL_PIXELS = 150  # a region part smaller than this (pixels) gets no name


def brush_colour(weight: float | None) -> str:
    """The brush colour for a paint weight: red for positive (or unset), blue for negative, as ``#rrggbb``."""
    rgb = PATTERN_COLOURS[-1 if weight is not None and weight < 0 else 1]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def curvature_base(image: np.ndarray, lookup: np.ndarray | None = None) -> np.ndarray:
    """The flatmap's curvature shading without the outlines and names drawn into it when it was built.

    The builders shade curvature in greys between 90 and 210 (``braindiff_app.data._flatmap_draw``); coloured,
    white or black pixels (and a 2-pixel halo of their anti-aliasing) are filled from the nearest grey pixel. Pixels
    off the cortex become fully transparent white: the builders' names left translucent pixels, hidden colour and,
    with ``lookup``, small opaque islands (under 0.1% of the map's cortex) over no voxel there (beside the V1 label),
    which showed as a grey smudge. Larger islands without voxels stay: on an NSD subject's map that is cortex outside
    nsdgeneral.

    Parameters
    ----------
    image : array of shape (height, width, 4), uint8
        RGBA flatmap, transparent off the cortex.
    lookup : array of shape (height, width), int, optional
        Voxel under each pixel (-1 none): small opaque islands with no voxel under them are dropped.

    Returns
    -------
    array of shape (height, width, 4), uint8
    """
    from scipy import ndimage

    rgb = image[..., :3].astype(np.int16)
    opaque = image[..., 3] == 255  # the cortex; translucent pixels are remnants of the builders' names
    if lookup is not None:
        islands, n = ndimage.label(opaque)
        over_voxels = np.bincount(islands[np.asarray(lookup) >= 0], minlength=n + 1) > 0
        small = np.bincount(islands.ravel(), minlength=n + 1) < 0.001 * opaque.sum()
        opaque &= ~(small & ~over_voxels)[islands]
    spread = rgb.max(-1) - rgb.min(-1)
    ink = opaque & ((spread > 6) | (rgb.min(-1) < 88) | (rgb.max(-1) > 212))
    ink = ndimage.binary_dilation(ink, iterations=2) & opaque
    out = image.copy()
    if ink.any() and (opaque & ~ink).any():
        _, (rows, cols) = ndimage.distance_transform_edt(ink | ~opaque, return_indices=True)
        out[ink, :3] = image[rows[ink], cols[ink], :3]
    out[~opaque] = (255, 255, 255, 0)
    return out


@dataclass(frozen=True)
class StudioMap:
    """A subject's flatmap as the studio draws it.

    Attributes
    ----------
    base : array of shape (height, width, 4), uint8
        Curvature shading (:func:`curvature_base`).
    lookup : array of shape (height, width), int64
        Subject voxel index under each pixel, -1 where none.
    regions : dict of str to array of shape (height, width), bool
        Pixels of each region the subject has (smoothed voxel masks).
    side : array of shape (height, width), int8
        1 left hemisphere, 2 right, 0 off the cortex.
    """

    base: np.ndarray
    lookup: np.ndarray
    regions: dict[str, np.ndarray]
    side: np.ndarray

    def draw(self, eccentricity: bool = False) -> np.ndarray:
        """The map with outlines, names and orientation labels; eccentricity bands too when ``eccentricity``.

        Returns
        -------
        array of shape (height, width, 4), uint8
        """
        from PIL import Image, ImageDraw, ImageFont

        out = self.base.copy()
        drawn = [r for r in (*VISUAL_REGIONS, *CATEGORY_REGIONS) if r in self.regions]
        bands = [r for r in ECCENTRICITY_REGIONS if r in self.regions] if eccentricity else []
        for name in drawn + bands:
            ring, halo = _outline(self.regions[name])
            out[halo & (out[..., 3] > 0), :3] = (0, 0, 0) if name in drawn else (255, 255, 255)
            out[ring, :3] = REGION_COLOURS.get(name, ECCENTRICITY_COLOUR)
        image = Image.fromarray(out, "RGBA")
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=LABEL_FONT_PX)
        for name in drawn + bands:
            label = REGION_LABELS[name] if name in bands else name
            for row, col in _label_points(self.regions[name], self.side):
                draw.text((col, row), label, font=font, anchor="mm", fill=(255, 255, 255, 255), stroke_width=3,
                          stroke_fill=(0, 0, 0, 255))
        note = ImageFont.load_default(size=_NOTE_FONT_PX)
        height, width = self.lookup.shape
        style = {"font": note, "fill": (20, 20, 20, 255), "stroke_width": 3, "stroke_fill": (255, 255, 255, 255)}
        draw.text((8, 6), text.ROI_MAP_LEFT, anchor="la", **style)
        draw.text((width - 8, 6), text.ROI_MAP_RIGHT, anchor="ra", **style)
        draw.text((width // 2, 6), text.ROI_MAP_DORSAL, anchor="ma", **style)
        draw.text((width // 2, height - 6), text.ROI_MAP_VENTRAL, anchor="md", **style)
        draw.text((8, height - 6), text.ROI_MAP_ANTERIOR_LEFT, anchor="ld", **style)
        draw.text((width - 8, height - 6), text.ROI_MAP_ANTERIOR_RIGHT, anchor="rd", **style)
        draw.text((width // 2, height // 2), text.ROI_MAP_POSTERIOR, anchor="mm", **style)
        return np.asarray(image)


def studio_map(image: np.ndarray, lookup: np.ndarray, atlas: ROIAtlas) -> StudioMap:
    """Prepare a subject's flatmap for the studio (region pixel masks, hemisphere sides, clean shading).

    Parameters
    ----------
    image : array of shape (height, width, 4), uint8
        The flatmap from :func:`braindiff_app.roi.load_subject_flatmap`.
    lookup : array of shape (height, width), int
        Its pixel -> subject voxel lookup (-1 none).
    atlas : ROIAtlas
        The subject's regions.
    """
    from scipy import ndimage

    lookup = np.asarray(lookup, dtype=np.int64)
    regions = {}
    for name, voxels in atlas.regions.items():
        mask = np.isin(lookup, voxels)
        # Pixels take the voxel under the nearest vertex: close the gaps between a region's voxels, drop specks.
        mask = ndimage.binary_opening(ndimage.binary_closing(mask, iterations=2), iterations=1) & (lookup >= 0)
        if mask.any():
            regions[name] = mask
    valid = lookup >= 0
    columns = valid.sum(0)
    width = lookup.shape[1]
    middle = width // 3 + int(np.argmin(columns[width // 3: 2 * width // 3]))
    side = np.where(valid, np.where(np.arange(width)[None, :] < middle, 1, 2), 0).astype(np.int8)
    return StudioMap(base=curvature_base(image, lookup), lookup=lookup, regions=regions, side=side)


def _outline(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A region's 3-pixel outline ring inside its border and a 1-pixel halo outside it."""
    from scipy import ndimage

    ring = mask & ~ndimage.binary_erosion(mask, iterations=3)
    halo = ndimage.binary_dilation(mask, iterations=1) & ~mask
    return ring, halo


def _label_points(mask: np.ndarray, side: np.ndarray) -> list[tuple[float, float]]:
    """Where to name a region: the centre of its largest part in each hemisphere (row, column)."""
    from scipy import ndimage

    points = []
    for hemisphere in (1, 2):
        parts, n = ndimage.label(mask & (side == hemisphere))
        if n == 0:
            continue
        sizes = np.bincount(parts.ravel())[1:]
        biggest = int(np.argmax(sizes)) + 1
        if sizes[biggest - 1] < _MIN_LABEL_PIXELS:
            continue
        rows, cols = np.nonzero(parts == biggest)
        # The pixel of the part nearest its centre (a C-shaped part's centre may lie outside it).
        k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
        points.append((float(rows[k]), float(cols[k])))
    return points


def pattern_overlay(image: np.ndarray, lookup: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A pattern drawn on a flatmap: red where the voxel's weight is positive, blue where negative.

    Parameters
    ----------
    image : array of shape (height, width, 3 or 4), uint8
    lookup : array of shape (height, width), int
    weight : array of shape (n_voxels,)

    Returns
    -------
    array of shape (height, width, 3), uint8
    """
    on_voxel = lookup >= 0
    pixel_weight = np.where(on_voxel, np.asarray(weight)[np.clip(lookup, 0, None)], 0.0)
    out = image[..., :3].copy()
    for sign, colour in PATTERN_COLOURS.items():
        hit = np.sign(pixel_weight) == sign
        out[hit] = (0.35 * out[hit] + 0.65 * np.array(colour)).astype(np.uint8)
    return out


def painted_layer(painted: np.ndarray | tuple[int, ...], lookup: np.ndarray, weight: float) -> np.ndarray:
    """A canvas layer that paints ``painted`` voxels again: every pixel over one of them, in the brush colour.

    Returns
    -------
    array of shape (height, width, 4), uint8
        Transparent where nothing is painted.
    """
    hit = np.isin(lookup, np.asarray(painted, dtype=np.int64)) & (lookup >= 0)
    layer = np.zeros((*lookup.shape, 4), np.uint8)
    layer[hit] = (*PATTERN_COLOURS[-1 if weight < 0 else 1], 255)
    return layer


def painted_mask(layers: list[np.ndarray | None] | None, shape: tuple[int, int]) -> np.ndarray | None:
    """The painted pixels of canvas layers whose size is ``shape`` (None when there are none)."""
    masks = [np.asarray(layer)[..., 3] > 0 for layer in layers or [] if layer is not None
             and np.asarray(layer).shape[:2] == tuple(shape)]
    return np.logical_or.reduce(masks) if masks else None


def region_at(smap: StudioMap, atlas: ROIAtlas, x: int, y: int) -> str:
    """Name what lies under flatmap pixel (``x``, ``y``): the regions of its voxel, its hemisphere, the voxel.

    The lookup is the brush's: painting this pixel selects the voxel named here.
    """
    height, width = smap.lookup.shape
    if not (0 <= x < width and 0 <= y < height):
        return text.ROI_AT_OUTSIDE.format(x=x, y=y)
    voxel = int(smap.lookup[y, x])
    if voxel < 0:
        return text.ROI_AT_NONE.format(x=x, y=y)
    names = [name for name, voxels in atlas.regions.items() if bool((voxels == voxel).any())]
    hemisphere = text.ROI_MAP_LEFT if smap.side[y, x] == 1 else text.ROI_MAP_RIGHT
    return text.ROI_AT.format(x=x, y=y, regions=", ".join(names) or text.ROI_AT_UNLABELLED,
                              hemisphere=hemisphere.lower(), voxel=voxel)

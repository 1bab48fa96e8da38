"""The demo subject's anatomy: pycortex's subject S1 turned into a voxel grid, ROIs, a retinotopic map and a flatmap.

Build time (``braindiff demo anatomy``, needs pycortex) reads S1's surfaces (white, pial, flat), its hand-drawn
ROIs and its ``fullhead`` transform (100 x 100 x 31 voxels of 2.24 x 2.24 x 4.13 mm), and writes small assets into
``assets/demo/anatomy/``; run time (:func:`load_anatomy`, :func:`braindiff_app.data.flatmap.load_flatmap`) reads
only those files.

Made at build time:

* ROI labels per voxel (majority vote of the cortical samples in the voxel): V1, V2, V3 (split dorsal/ventral),
  faces (OFA, FFA as FFA-1), places (OPA, PPA, RSC), bodies (EBA), with NSD's label values. S1 has no hV4 and no
  word areas: those labels are absent.
* An nsdgeneral-like visual mask: the cortex inside the flat convex hull of those ROIs (per hemisphere) and
  within 10 flat mm of one of them.
* A retinotopic map laid on the flatmap: eccentricity grows along the V1-V3 strip away from the foveal
  confluence (the tip of the calcarine cut), polar angle runs across the strip with mirror reversals at the
  V1/V2 (vertical meridian) and V2/V3 (horizontal meridian) borders; the left hemisphere sees the right visual
  field, dorsal areas the lower field.
* A flatmap base image (curvature and ROI outlines, drawn here) and a pixel -> voxel lookup.

The grid is the ``fullhead`` grid cropped to a box around the visual mask; the affine is adjusted to match.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from braindiff_app.atomic import atomic_path, atomic_save_npz, atomic_write_json
from braindiff_app.config import DEMO_ANATOMY_DIR

__all__ = [
    "ROI_FILES",
    "Anatomy",
    "build_anatomy",
    "load_anatomy",
]

# NSD ROI files and the S1 ROIs that fill them: file -> {label value: S1 ROI name}.
ROI_FILES = {
    "prf-visualrois": {1: "V1v", 2: "V1d", 3: "V2v", 4: "V2d", 5: "V3v", 6: "V3d"},
    "floc-faces": {1: "OFA", 2: "FFA"},
    "floc-places": {1: "OPA", 2: "PPA", 3: "RSC"},
    "floc-bodies": {1: "EBA"},
    "floc-words": {},
}
# Priority when a voxel's samples fall in several ROIs: the earlier wins ties.
_S1_ROIS = ("V1", "V2", "V3", "OFA", "FFA", "OPA", "PPA", "RSC", "EBA")
_MAX_ECC = 16.0  # deg, eccentricity at the far ends of the V1-V3 strip
_ECC_SCALE = 1.0  # deg, e0 of the log map u = log(1 + ecc / e0) / log(1 + max / e0)
_MASK_DISTANCE = 10.0  # flat mm: how far from an ROI the visual mask reaches
_FILES = ("anatomy.npz", "flatmap.png", "flatmap_lookup.npz", "anatomy.json")


@dataclass(frozen=True)
class Anatomy:
    """The demo subject's voxel grid, masks, ROI labels and retinotopy.

    Attributes
    ----------
    affine : ndarray of float64, shape (4, 4)
        Voxel (i, j, k) -> scanner mm.
    brain : ndarray of bool, shape (x, y, z)
        Voxels inside the brain (cortex samples, holes filled per slice).
    nsdgeneral : ndarray of bool, shape (x, y, z)
        The visual mask.
    rois : dict of str -> ndarray of int8, shape (x, y, z)
        NSD ROI file name (``prf-visualrois``, ``floc-faces``, ...) -> label volume (0 unlabelled).
    eccentricity, polar_angle : ndarray of float32, shape (x, y, z)
        Retinotopy of V1-V3 voxels (deg; polar angle in deg counter-clockwise from the right horizontal
        meridian, in (-180, 180]); NaN elsewhere.
    hemisphere : ndarray of int8, shape (x, y, z)
        0 outside cortex, 1 left, 2 right (majority of the voxel's samples).
    """

    affine: np.ndarray
    brain: np.ndarray
    nsdgeneral: np.ndarray
    rois: dict[str, np.ndarray]
    eccentricity: np.ndarray
    polar_angle: np.ndarray
    hemisphere: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (x, y, z)."""
        return tuple(self.brain.shape)


def load_anatomy(folder: str | os.PathLike | None = None) -> Anatomy:
    """Read the committed demo anatomy (no pycortex needed).

    Parameters
    ----------
    folder : path, optional
        Folder written by :func:`build_anatomy` (default ``assets/demo/anatomy``).

    Returns
    -------
    Anatomy
    """
    path = Path(folder or DEMO_ANATOMY_DIR) / "anatomy.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: demo anatomy not found; build it with `braindiff demo anatomy`.")
    with np.load(path, allow_pickle=False) as npz:
        rois = {name: npz[f"roi_{name}"] for name in ROI_FILES}
        return Anatomy(
            affine=npz["affine"], brain=npz["brain"], nsdgeneral=npz["nsdgeneral"], rois=rois,
            eccentricity=npz["eccentricity"], polar_angle=npz["polar_angle"], hemisphere=npz["hemisphere"],
        )


# -- build (pycortex) -----------------------------------------------------------------------------------------

def _import_cortex():
    """Import pycortex; unless XDG_CONFIG_HOME is set, its config file goes to a fresh temporary folder."""
    if not os.environ.get("XDG_CONFIG_HOME"):
        import tempfile

        os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="braindiff-pycortex-")
    try:
        import cortex  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "building the demo anatomy needs pycortex: pip install -r requirements-anatomy.txt"
        ) from exc
    return cortex


def _read_s1(cortex) -> dict[str, np.ndarray]:
    """S1's surfaces, ROIs and transform as plain arrays (merged hemispheres, left first)."""
    db = cortex.db
    flat, polys = db.get_surf("S1", "flat", merge=True, nudge=True)
    wm, _ = db.get_surf("S1", "wm", merge=True, nudge=False)
    pia, _ = db.get_surf("S1", "pia", merge=True, nudge=False)
    n_left = len(db.get_surf("S1", "flat", "lh")[0])
    curvature = np.asarray(db.get_surfinfo("S1", "curvature").data, np.float32)
    roi_verts = cortex.utils.get_roi_verts("S1", roi=list(_S1_ROIS))
    xfm = db.get_xfm("S1", "fullhead", xfmtype="coord")
    reference = db.get_xfm("S1", "fullhead").reference
    samples = [xfm(wm + t * (pia - wm)) for t in (0.2, 0.5, 0.8)]  # (n_vertices, 3) voxel coordinates each
    return {
        "flat": np.asarray(flat[:, :2], np.float64),
        "polys": np.asarray(polys, np.int64),
        "fiducial": np.asarray((wm + pia) / 2, np.float64),
        "hemisphere": np.where(np.arange(len(flat)) < n_left, 1, 2).astype(np.int8),
        "curvature": curvature,
        "samples": np.stack(samples),  # (3, n_vertices, 3)
        "affine": np.asarray(reference.affine, np.float64),
        "grid_shape": np.asarray(reference.shape[:3], np.int64),
        **{f"roi_{name}": np.asarray(roi_verts[name], np.int64) for name in _S1_ROIS},
    }


def _adjacency(polys: np.ndarray, n_vertices: int):
    from scipy import sparse

    edges = np.concatenate([polys[:, [0, 1]], polys[:, [1, 2]], polys[:, [2, 0]]])
    ones = np.ones(len(edges), np.int8)
    adj = sparse.coo_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(n_vertices, n_vertices)).tocsr()
    return adj + adj.T


def _clean_roi(verts: np.ndarray, adjacency) -> np.ndarray:
    """Drop stray islands (S1's ROI file holds a few label glyphs): keep components >= 20 % of the largest."""
    from scipy.sparse.csgraph import connected_components

    if len(verts) == 0:
        return verts
    sub = adjacency[verts][:, verts]
    _, comp = connected_components(sub, directed=False)
    sizes = np.bincount(comp)
    return verts[sizes[comp] >= 0.2 * sizes.max()]


def _boundary_vertices(polys: np.ndarray) -> np.ndarray:
    """Vertices on edges that belong to one triangle only (the flat patch's border and cuts)."""
    edges = np.sort(np.concatenate([polys[:, [0, 1]], polys[:, [1, 2]], polys[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return np.unique(unique[counts == 1])


def _retinotopy(s1: dict, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-vertex eccentricity (deg), polar angle (deg) and dorsal flag for V1-V3 vertices (NaN elsewhere).

    Polar angle across the strip: V1 from the horizontal meridian at the calcarine cut to the vertical meridian
    at V1/V2, V2 back to the horizontal meridian at V2/V3, V3 out to the vertical meridian at its outer edge.
    Eccentricity along the strip, log-spaced from the foveal confluence (the V1 vertex nearest the occipital
    pole) to ``_MAX_ECC`` at each arm's far end.
    """
    from scipy.spatial import cKDTree

    flat, fid, hemi = s1["flat"], s1["fiducial"], s1["hemisphere"]
    n = len(flat)
    ecc = np.full(n, np.nan)
    angle = np.full(n, np.nan)
    dorsal = np.zeros(n, bool)
    border = _boundary_vertices(s1["polys"])
    for h in (1, 2):
        in_h = hemi == h
        area = {k: np.flatnonzero(in_h & (labels == k)) for k in (1, 2, 3)}  # V1, V2, V3
        others = np.flatnonzero(in_h & (labels != 1) & (labels != 2) & (labels != 3))
        cut = np.intersect1d(border, area[1])

        def dist(points, targets):
            return cKDTree(flat[targets]).query(flat[points])[0]

        # Fraction t across each area, from its inner to its outer border.
        inner = {1: cut, 2: area[1], 3: area[2]}
        outer = {1: area[2], 2: area[3], 3: np.setdiff1d(others, cut)}
        for k in (1, 2, 3):
            d_in, d_out = dist(area[k], inner[k]), dist(area[k], outer[k])
            t = d_in / np.maximum(d_in + d_out, 1e-9)
            # Angle from the horizontal meridian, 0..90 deg; mirror reversal in V2.
            angle[area[k]] = 90.0 * (1 - t if k == 2 else t)
        # Fovea: the most posterior (fiducial y) V1 vertex on the cut.
        fovea_y = flat[cut[np.argsort(fid[cut, 1])[: max(1, len(cut) // 50)]], 1].mean()
        strip = np.concatenate([area[1], area[2], area[3]])
        up = strip[flat[strip, 1] >= fovea_y]
        down = strip[flat[strip, 1] < fovea_y]
        # The arm whose V1 lies higher in the head (fiducial z) is dorsal: the lower visual field.
        up_is_dorsal = fid[np.intersect1d(up, area[1]), 2].mean() > fid[np.intersect1d(down, area[1]), 2].mean()
        for arm, is_dorsal in ((up, up_is_dorsal), (down, not up_is_dorsal)):
            distance = np.abs(flat[arm, 1] - fovea_y)
            u = distance / distance.max()
            ecc[arm] = _ECC_SCALE * ((1 + _MAX_ECC / _ECC_SCALE) ** u - 1)
            dorsal[arm] = is_dorsal
        # Visual-field angle: left hemisphere -> right field (0 deg), right -> left (180 deg); dorsal -> below.
        sign = np.where(dorsal[strip], -1.0, 1.0)
        theta = sign * angle[strip]
        angle[strip] = theta if h == 1 else np.where(theta >= 0, 180.0 - theta, -180.0 - theta)
    return ecc, angle, dorsal


def _visual_mask_vertices(s1: dict, roi_vertices: np.ndarray, max_distance: float = _MASK_DISTANCE) -> np.ndarray:
    """Vertices inside the flat convex hull of the ROIs (per hemisphere) and near one: the nsdgeneral-like region.

    ``max_distance`` (flat mm) keeps the mask to the cortex around the ROIs, not the hull's empty corners.
    """
    from scipy.spatial import Delaunay, cKDTree

    flat, hemi = s1["flat"], s1["hemisphere"]
    on_patch = np.zeros(len(flat), bool)
    on_patch[np.unique(s1["polys"])] = True
    mask = np.zeros(len(flat), bool)
    for h in (1, 2):
        members = roi_vertices[hemi[roi_vertices] == h]
        hull = Delaunay(flat[members])
        candidates = np.flatnonzero(on_patch & (hemi == h))
        near = cKDTree(flat[members]).query(flat[candidates])[0] <= max_distance
        mask[candidates[(hull.find_simplex(flat[candidates]) >= 0) & near]] = True
    mask[roi_vertices] = True
    return mask


def _vote(voxel: np.ndarray, values: np.ndarray, n_voxels: int, n_values: int) -> np.ndarray:
    """Majority value per voxel (0 = no sample); ties go to the smaller non-zero value."""
    counts = np.zeros((n_voxels, n_values), np.int32)
    np.add.at(counts, (voxel, values), 1)
    best = counts[:, 1:].argmax(axis=1) + 1
    # A labelled value wins only against the unlabelled samples if it holds at least a third of them.
    labelled = counts[:, 1:].max(axis=1) * 3 >= counts.sum(axis=1)
    return np.where(labelled & (counts[:, 1:].max(axis=1) > 0), best, 0)


def _volumes(s1: dict, labels: np.ndarray, visual: np.ndarray, ecc: np.ndarray, angle: np.ndarray,
             dorsal: np.ndarray) -> dict[str, np.ndarray]:
    """Vertex values -> voxel volumes on the full grid (before cropping)."""
    from scipy import ndimage

    shape = tuple(int(s) for s in s1["grid_shape"])
    n_vox = int(np.prod(shape))
    samples = np.rint(s1["samples"]).astype(np.int64)  # (3, n_vertices, 3)
    inside = np.all((samples >= 0) & (samples < np.asarray(shape)), axis=2)
    depth_idx, vert = np.nonzero(inside)
    voxel = np.ravel_multi_index(tuple(samples[depth_idx, vert].T), shape)
    cortex = np.zeros(n_vox, bool)
    cortex[voxel] = True
    roi = _vote(voxel, labels[vert], n_vox, len(_S1_ROIS) + 1)
    hemisphere = _vote(voxel, s1["hemisphere"][vert], n_vox, 3).astype(np.int8)
    # Visual mask: voxels whose samples are mostly visual, plus every ROI voxel.
    visual_vox = (_vote(voxel, visual[vert].astype(np.int64), n_vox, 2) == 1) | (roi > 0)
    # Retinotopy: average the V1-V3 samples' visual-field positions (log eccentricity) per voxel.
    retino = np.isfinite(ecc[vert]) & np.isin(roi[voxel], (1, 2, 3))
    v, vv = voxel[retino], vert[retino]
    log_e = np.log1p(ecc[vv] / _ECC_SCALE)
    rad = np.deg2rad(angle[vv])
    sums = np.zeros((n_vox, 4))
    for col, values in enumerate((np.ones_like(log_e), log_e * np.cos(rad), log_e * np.sin(rad), dorsal[vv])):
        np.add.at(sums[:, col], v, values)
    has = sums[:, 0] > 0
    ecc_vox = np.full(n_vox, np.nan, np.float32)
    ang_vox = np.full(n_vox, np.nan, np.float32)
    mean_x, mean_y = sums[has, 1] / sums[has, 0], sums[has, 2] / sums[has, 0]
    ecc_vox[has] = _ECC_SCALE * np.expm1(np.hypot(mean_x, mean_y))
    ang_vox[has] = np.rad2deg(np.arctan2(mean_y, mean_x))
    is_dorsal = np.zeros(n_vox, bool)
    is_dorsal[has] = sums[has, 3] / sums[has, 0] > 0.5
    brain = ndimage.binary_closing(cortex.reshape(shape), iterations=2)
    for k in range(shape[2]):
        brain[:, :, k] = ndimage.binary_fill_holes(brain[:, :, k])
    return {
        "cortex": cortex.reshape(shape), "brain": brain | cortex.reshape(shape), "roi": roi.reshape(shape),
        "visual": visual_vox.reshape(shape), "eccentricity": ecc_vox.reshape(shape),
        "polar_angle": ang_vox.reshape(shape), "dorsal": is_dorsal.reshape(shape),
        "hemisphere": hemisphere.reshape(shape), "vertex_voxel": _mid_voxel(samples[1], shape),
    }


def _mid_voxel(mid: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    inside = np.all((mid >= 0) & (mid < np.asarray(shape)), axis=1)
    out = np.full(len(mid), -1, np.int64)
    out[inside] = np.ravel_multi_index(tuple(mid[inside].T), shape)
    return out


def _nsd_roi_volumes(roi: np.ndarray, dorsal: np.ndarray) -> dict[str, np.ndarray]:
    """S1 ROI codes (1-based index into ``_S1_ROIS``) -> NSD label volumes."""
    code = {name: i + 1 for i, name in enumerate(_S1_ROIS)}
    out = {name: np.zeros(roi.shape, np.int8) for name in ROI_FILES}
    for area, (ventral, dorsal_label) in zip(("V1", "V2", "V3"), ((1, 2), (3, 4), (5, 6)), strict=True):
        here = roi == code[area]
        out["prf-visualrois"][here & ~dorsal] = ventral
        out["prf-visualrois"][here & dorsal] = dorsal_label
    for file in ("floc-faces", "floc-places", "floc-bodies"):
        for value, name in ROI_FILES[file].items():
            out[file][roi == code[name]] = value
    return out


def build_anatomy(out_dir: str | os.PathLike | None = None, flatmap_width: int = 900, margin: int = 2) -> dict:
    """Build the demo anatomy assets from pycortex's S1 (needs ``pip install -r requirements-anatomy.txt``).

    Parameters
    ----------
    out_dir : path, optional
        Output folder (default ``assets/demo/anatomy``).
    flatmap_width : int, default 900
        Width of the flatmap image in pixels (the occipital part of the flatmap).
    margin : int, default 2
        Voxels kept around the visual mask's bounding box when cropping the grid.

    Returns
    -------
    dict
        Summary: grid shape, voxel counts per ROI, file sizes (bytes).
    """
    from braindiff_app.data._flatmap_draw import draw_flatmap

    cortex = _import_cortex()
    out = Path(out_dir or DEMO_ANATOMY_DIR)
    out.mkdir(parents=True, exist_ok=True)
    s1 = _read_s1(cortex)
    n_vertices = len(s1["flat"])
    adjacency = _adjacency(s1["polys"], n_vertices)
    labels = np.zeros(n_vertices, np.int64)
    for i, name in reversed(list(enumerate(_S1_ROIS))):  # earlier names win overlaps
        labels[_clean_roi(s1[f"roi_{name}"], adjacency)] = i + 1
    ecc, angle, dorsal = _retinotopy(s1, labels)
    visual = _visual_mask_vertices(s1, np.flatnonzero(labels > 0))
    vol = _volumes(s1, labels, visual, ecc, angle, dorsal)

    # Crop the grid to the visual mask's bounding box (+ margin) and shift the affine to match.
    idx = np.argwhere(vol["visual"])
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, vol["visual"].shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    affine = s1["affine"].copy()
    affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    rois = _nsd_roi_volumes(vol["roi"][crop], vol["dorsal"][crop])
    nsdgeneral = vol["visual"][crop]
    arrays = {
        "affine": affine, "fullhead_offset": lo.astype(np.int64), "brain": vol["brain"][crop] | nsdgeneral,
        "nsdgeneral": nsdgeneral, "eccentricity": np.where(nsdgeneral, vol["eccentricity"][crop], np.nan),
        "polar_angle": np.where(nsdgeneral, vol["polar_angle"][crop], np.nan),
        "hemisphere": vol["hemisphere"][crop], **{f"roi_{k}": v for k, v in rois.items()},
    }
    atomic_save_npz(out / "anatomy.npz", arrays)

    # Vertex -> cropped-grid voxel, for the flatmap lookup.
    full_shape = vol["visual"].shape
    vv = vol["vertex_voxel"]
    vertex_voxel = np.full(n_vertices, -1, np.int64)
    ok = vv >= 0
    ijk = np.array(np.unravel_index(vv[ok], full_shape)).T - lo
    in_crop = np.all((ijk >= 0) & (ijk < (hi - lo)), axis=1)
    flat_idx = np.full(len(ijk), -1, np.int64)
    flat_idx[in_crop] = np.ravel_multi_index(tuple(ijk[in_crop].T), tuple(hi - lo))
    vertex_voxel[np.flatnonzero(ok)] = flat_idx
    image, pixel_voxel = draw_flatmap(s1["flat"], s1["polys"], s1["curvature"], labels, _S1_ROIS, vertex_voxel,
                                      visual, s1["hemisphere"], width=flatmap_width)
    atomic_save_npz(out / "flatmap_lookup.npz", {"pixel_voxel": pixel_voxel.astype(np.int32)})
    from PIL import Image

    with atomic_path(out / "flatmap.png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG", optimize=True)
    summary = {
        "source": "pycortex 1.4.0 subject S1, transform fullhead",
        "grid_shape": [int(s) for s in nsdgeneral.shape],
        "voxel_size_mm": [float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)],
        "fullhead_offset": [int(v) for v in lo],
        "n_voxels": {"nsdgeneral": int(nsdgeneral.sum()), "brain": int(arrays["brain"].sum())},
    }
    for file, names in ROI_FILES.items():
        for value, name in names.items():
            summary["n_voxels"][name] = int((rois[file] == value).sum())
    atomic_write_json(out / "anatomy.json", summary)
    summary["bytes"] = {name: (out / name).stat().st_size for name in _FILES}
    return summary


def anatomy_summary(folder: str | os.PathLike | None = None) -> dict:
    """The build summary stored beside the assets (grid, voxel counts per ROI)."""
    path = Path(folder or DEMO_ANATOMY_DIR) / "anatomy.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: demo anatomy summary not found; build it with `braindiff demo anatomy`.")
    return json.loads(path.read_text())

"""Flatmaps of NSD subjects: a cortical flatmap to paint on and its pixel -> func1pt8mm voxel lookup.

Built from files NSD ships for every subject (nibabel + numpy; pycortex is not needed), per hemisphere:

* ``nsddata/freesurfer/subjXX/surf/<hemi>.full.flat.patch.3d``: the flattened cortex (FreeSurfer binary patch:
  which vertices, and their flat x, y in mm); read by :func:`read_patch`;
* ``surf/<hemi>.white``: the triangles (every FreeSurfer surface of a hemisphere shares vertices and triangles;
  a triangle belongs to the flatmap when its three vertices are in the patch);
* ``surf/<hemi>.curv``: curvature, for the shading;
* ``nsddata/ppdata/subjXX/transforms/<hemi>.func1pt8-to-layerB2.mgz``: each vertex's position in the func1pt8mm
  grid on the mid-depth cortical surface layerB2 (nsdcode's volume-to-surface transform: 1-based decimal voxel
  coordinates, 9999 where none). A vertex belongs to the voxel its position rounds to.

and the subject's func1pt8mm ROI volumes (``nsdgeneral`` frames the image; prf-visualrois and floc-* give the
region outlines, with the same definitions as the atlas, :data:`~braindiff_app.data.atlas.REGION_SOURCES`).
Each flatmap pixel takes the nearest patch vertex (within a few edge lengths), so a pixel maps to one voxel, and
region outlines are drawn where the vertices' voxels carry the region's labels: painting over an outline selects
that region's voxels. The drawing follows pycortex's conventions (flat axes swapped and y flipped as pycortex
imports FreeSurfer patches, hemispheres side by side, here 4 mm apart, curvature sign flipped) and shares its code
with the demo flatmap (:mod:`braindiff_app.data._flatmap_draw`).

The result is cached as ``flatmap.npz`` in a folder of the caller's choice (the workspace's
``flatmap/subjXX``), together with the identity (path, size, modification time) of every input file; a later call
with unchanged inputs reads the cache, a changed input rebuilds it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from braindiff_app.data import nsd_layout as L
from braindiff_app.data.atlas import CATEGORY_REGIONS, REGION_SOURCES, VISUAL_REGIONS, read_label_volume
from braindiff_app.data.flatmap import Flatmap

__all__ = [
    "FLATMAP_REGIONS",
    "SURFACE",
    "flatmap_inputs",
    "read_patch",
    "build_nsd_flatmap",
    "load_nsd_flatmap",
]

#: Regions outlined on the flatmap (earlier names win where regions overlap).
FLATMAP_REGIONS = VISUAL_REGIONS + CATEGORY_REGIONS
#: The cortical surface whose vertex positions map vertices to voxels: NSD's mid-depth surface.
SURFACE = "layerB2"
_GAP = 4.0  # flat mm between the hemispheres
_NO_POSITION = 9999  # nsdcode's marker of a vertex without a position
_CACHE_VERSION = 1
_CACHE_FILE = "flatmap.npz"


def _hemisphere_files(nsd_dir, subject: int, hemi: str) -> dict[str, tuple[Path, str]]:
    """One hemisphere's required files: key -> (path, what it is)."""
    name = f"subj{subject:02d} ({hemi})"
    return {
        "patch": (L.surface_path(nsd_dir, subject, hemi, "full.flat.patch.3d"),
                  f"flattened cortex of {name}, FreeSurfer binary patch"),
        "white": (L.surface_path(nsd_dir, subject, hemi, "white"), f"white-matter surface of {name} (its triangles)"),
        "curv": (L.surface_path(nsd_dir, subject, hemi, "curv"), f"curvature of {name}"),
        "transform": (L.surface_transform_path(nsd_dir, subject, hemi, SURFACE),
                      f"vertex -> func1pt8mm voxel positions of {name}, mid-depth surface {SURFACE}"),
    }


def _nsdgeneral_file(nsd_dir, subject: int) -> tuple[Path, str]:
    return L.roi_path(nsd_dir, subject, "nsdgeneral"), f"nsdgeneral ROI volume of subj{subject:02d} (func1pt8mm)"


def flatmap_inputs(nsd_dir: str | os.PathLike, subject: int | str) -> list[tuple[Path, str, bool]]:
    """The files an NSD subject's flatmap is built from.

    Returns
    -------
    list of (Path, str, bool)
        Each file, what it is (for messages and ``braindiff doctor``), and whether it is required (an absent
        optional ROI file only loses its outlines).
    """
    s = int(subject)
    files = [(path, what, True) for hemi in L.HEMISPHERES
             for path, what in _hemisphere_files(nsd_dir, s, hemi).values()]
    files.append((*_nsdgeneral_file(nsd_dir, s), True))
    for stem in dict.fromkeys(REGION_SOURCES[r][0] for r in FLATMAP_REGIONS):
        files.append((L.roi_path(nsd_dir, s, stem), f"{stem} ROI volume of subj{s:02d} (func1pt8mm; region outlines)",
                      False))
    return files


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing {what}, needed for the subject's flatmap (NSD layout "
                                "nsddata/freesurfer/subjXX/surf and nsddata/ppdata/subjXX/transforms); copy it from "
                                "NSD, or use region presets instead of painting.")
    return path


def read_patch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a FreeSurfer binary patch (e.g. ``lh.full.flat.patch.3d``).

    Returns
    -------
    vertices : array of shape (n_points,), int64
        0-based vertex indices into the hemisphere's surfaces.
    xyz : array of shape (n_points, 3), float64
        Patch coordinates, mm (flat patches: z = 0).
    border : array of shape (n_points,), bool
        Points on the patch's border.

    Raises
    ------
    ValueError
        If the file is not a FreeSurfer binary patch (wrong header or length).
    """
    data = Path(path).read_bytes()
    header = np.frombuffer(data[:8], ">i4") if len(data) >= 8 else np.array([0, 0])
    n_points = int(header[1])
    if header[0] != -1 or n_points < 0 or len(data) != 8 + n_points * L.PATCH_RECORD.itemsize:
        raise ValueError(f"{path}: not a FreeSurfer binary patch (expected header -1, n_points and "
                         f"{L.PATCH_RECORD.itemsize} bytes per point; got header {header.tolist()} and "
                         f"{len(data)} bytes).")
    records = np.frombuffer(data, L.PATCH_RECORD, count=n_points, offset=8)
    signed = records["vertex"].astype(np.int64)
    xyz = np.stack([records[c] for c in ("x", "y", "z")], axis=1).astype(np.float64)
    return np.abs(signed) - 1, xyz, signed < 0


def _read_hemisphere(nsd_dir, subject: int, hemi: str, grid_shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """One hemisphere's flat coordinates, patch triangles, curvature and vertex -> grid voxel (flat index, -1)."""
    import nibabel as nib
    from nibabel.freesurfer import read_geometry, read_morph_data

    files = {key: _require(path, what) for key, (path, what) in _hemisphere_files(nsd_dir, subject, hemi).items()}
    coords, faces = read_geometry(str(files["white"]))
    n_vertices = len(coords)
    curv = np.asarray(read_morph_data(str(files["curv"])), dtype=np.float64)
    position = np.asarray(nib.load(str(files["transform"])).get_fdata(), dtype=np.float64)
    position = position.reshape(position.shape[0], -1, order="F")
    vertices, xyz, _ = read_patch(files["patch"])
    if len(curv) != n_vertices:
        raise ValueError(f"{files['curv']}: expected {n_vertices} values (the vertices of {files['white'].name}), "
                         f"got {len(curv)}; the files come from different subjects.")
    if position.shape != (n_vertices, 3):
        raise ValueError(f"{files['transform']}: expected shape ({n_vertices}, 1, 1, 3) (a position per vertex of "
                         f"{files['white'].name}), got {position.shape}; the files come from different subjects.")
    if len(vertices) and (vertices.max() >= n_vertices):
        raise ValueError(f"{files['patch']}: vertex {vertices.max()} beyond the {n_vertices} vertices of "
                         f"{files['white'].name}; the files come from different subjects.")
    in_patch = np.zeros(n_vertices, bool)
    in_patch[vertices] = True
    flat = np.zeros((n_vertices, 2))
    flat[vertices] = np.stack([xyz[:, 1], -xyz[:, 0]], axis=1)  # pycortex's axes: (y, -x)
    polys = faces[in_patch[faces].all(axis=1)].astype(np.int64)
    # 1-based decimal voxel coordinates -> nearest voxel; 9999 (or NaN) marks a vertex with no position.
    valid = np.isfinite(position).all(axis=1) & (position != _NO_POSITION).all(axis=1)
    ijk = np.rint(np.where(valid[:, None], position, 1.0) - 1).astype(np.int64)
    valid &= ((ijk >= 0) & (ijk < np.asarray(grid_shape))).all(axis=1)
    vertex_voxel = np.full(n_vertices, -1, np.int64)
    vertex_voxel[valid] = np.ravel_multi_index(tuple(ijk[valid].T), grid_shape)
    return {"flat": flat, "polys": polys, "curvature": -curv, "vertex_voxel": vertex_voxel}


def _vertex_labels(nsd_dir, subject: int, vertex_voxel: np.ndarray, grid_shape) -> np.ndarray:
    """Per vertex: ``i + 1`` for ``FLATMAP_REGIONS[i]`` at the vertex's voxel, 0 for none (earlier regions win)."""
    labels = np.zeros(len(vertex_voxel), np.int64)
    on = vertex_voxel >= 0
    volumes: dict[str, np.ndarray | None] = {}
    for i, region in reversed(list(enumerate(FLATMAP_REGIONS))):
        stem, values = REGION_SOURCES[region]
        if stem not in volumes:
            path = L.roi_path(nsd_dir, subject, stem)
            volumes[stem] = read_label_volume(path).ravel() if path.exists() else None
            if volumes[stem] is not None and volumes[stem].size != int(np.prod(grid_shape)):
                raise ValueError(f"{path}: expected the nsdgeneral grid {grid_shape}, got {volumes[stem].size} "
                                 "voxels; the ROI files come from different subjects or resolutions.")
        if volumes[stem] is None:
            continue
        at = volumes[stem][vertex_voxel[on]]
        hit = at > 0 if values is None else np.isin(at, values)
        labels[np.flatnonzero(on)[hit]] = i + 1
    return labels


def build_nsd_flatmap(nsd_dir: str | os.PathLike, subject: int | str, width: int = 900) -> Flatmap:
    """Build an NSD subject's flatmap image and pixel -> func1pt8mm voxel lookup (no cache; see
    :func:`load_nsd_flatmap`).

    Parameters
    ----------
    nsd_dir : path
        NSD root (holding ``nsddata/``).
    subject : int or str
        NSD subject number.
    width : int, default 900
        Image width, pixels; the height follows the nsdgeneral region's flat aspect ratio.

    Returns
    -------
    Flatmap
        ``image`` (height, width, 4) uint8 RGBA (curvature, region outlines and names, nsdgeneral outline in
        white, transparent off the cortex) and ``pixel_voxel`` (height, width) int32: C-order flat index into the
        func1pt8mm grid, -1 off the cortex.

    Raises
    ------
    FileNotFoundError
        A required file is missing (the message names it and what it is).
    ValueError
        Files that do not fit together (vertex counts, grid shapes), or no vertex inside nsdgeneral.
    """
    from braindiff_app.data._flatmap_draw import draw_flatmap

    s = int(subject)
    general_path = _require(*_nsdgeneral_file(nsd_dir, s))
    general = read_label_volume(general_path)
    grid_shape = tuple(int(n) for n in general.shape)
    hemis = [_read_hemisphere(nsd_dir, s, hemi, grid_shape) for hemi in L.HEMISPHERES]
    # Side by side, as pycortex nudges them, with a small gap: the left hemisphere ends at x = -gap / 2.
    for h, side, shift in zip(hemis, (np.max, np.min), (-_GAP / 2, _GAP / 2), strict=True):
        on = np.unique(h["polys"])
        if len(on):
            h["flat"][:, 0] += shift - side(h["flat"][on, 0])
    offset = len(hemis[0]["flat"])
    flat = np.concatenate([h["flat"] for h in hemis])
    polys = np.concatenate([hemis[0]["polys"], hemis[1]["polys"] + offset])
    curvature = np.concatenate([h["curvature"] for h in hemis])
    vertex_voxel = np.concatenate([h["vertex_voxel"] for h in hemis])
    hemisphere = np.repeat(np.array([1, 2], np.int8), [offset, len(hemis[1]["flat"])])
    region = np.zeros(len(flat), bool)
    on = vertex_voxel >= 0
    region[on] = general.ravel()[vertex_voxel[on]] == 1
    region[np.setdiff1d(np.arange(len(flat)), np.unique(polys))] = False
    if not region.any():
        raise ValueError(f"{general_path}: no flatmap vertex lies in an nsdgeneral voxel; the surfaces, transforms "
                         "and ROI volumes come from different subjects or spaces.")
    labels = _vertex_labels(nsd_dir, s, vertex_voxel, grid_shape)
    image, pixel_voxel = draw_flatmap(flat, polys, curvature, labels, FLATMAP_REGIONS, vertex_voxel, region,
                                      hemisphere, width=width)
    return Flatmap(image=image, pixel_voxel=pixel_voxel.astype(np.int32))


def _identity(nsd_dir, subject: int, width: int) -> str:
    """The inputs' identity: every existing input's path (relative to the NSD root), size and mtime."""
    root = Path(nsd_dir)
    files = []
    for path, _, _ in flatmap_inputs(root, subject):
        if path.exists():
            stat = path.stat()
            files.append([str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns])
    return json.dumps({"version": _CACHE_VERSION, "width": width, "files": files}, sort_keys=True)


def load_nsd_flatmap(nsd_dir: str | os.PathLike, subject: int | str, cache_dir: str | os.PathLike,
                     width: int = 900) -> Flatmap:
    """An NSD subject's flatmap, from the cache when its inputs are unchanged, else built and cached.

    Parameters
    ----------
    nsd_dir : path
        NSD root.
    subject : int or str
        NSD subject number.
    cache_dir : path
        Folder for ``flatmap.npz`` (e.g. ``settings.subject_dir("flatmap", subject)``); written atomically.
    width : int, default 900
        Image width, pixels (part of the cache identity).

    Returns
    -------
    Flatmap
        See :func:`build_nsd_flatmap`.
    """
    from braindiff_app.atomic import atomic_write_bytes

    s = int(subject)
    for path, what, required in flatmap_inputs(nsd_dir, s):
        if required:
            _require(path, what)
    identity = _identity(nsd_dir, s, width)
    cache = Path(cache_dir) / _CACHE_FILE
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                if str(npz["identity"]) == identity:
                    return Flatmap(image=npz["image"], pixel_voxel=npz["pixel_voxel"])
        except (OSError, ValueError, KeyError):
            pass  # unreadable or older cache: rebuilt below
    flatmap = build_nsd_flatmap(nsd_dir, s, width=width)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, image=flatmap.image, pixel_voxel=flatmap.pixel_voxel, identity=np.array(identity))
    atomic_write_bytes(cache, buffer.getvalue())
    return flatmap

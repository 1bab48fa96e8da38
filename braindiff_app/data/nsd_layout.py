"""The Natural Scenes Dataset (NSD) folder layout: where each file lives, and small writers for its formats.

The real NSD and the demo tier's simulated NSD share this layout (docs/architecture.md, "Files"), so the reader
(:mod:`braindiff_app.data.nsd`) and the simulator build every path with the functions here. Paths are relative to
the NSD root, the folder holding ``nsddata/``, ``nsddata_betas/`` and ``nsddata_stimuli/``::

    nsddata/experiments/nsd/nsd_expdesign.mat                 masterordering, subjectim, sharedix (1-based)
    nsddata/experiments/nsd/nsd_stim_info_merged.csv          nsdId (0-based), cocoId, cocoSplit, ...
    nsddata/ppdata/subjXX/func1pt8mm/roi/<name>.nii.gz        nsdgeneral, prf-visualrois, floc-*, prf-eccrois
    nsddata_betas/ppdata/subjXX/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionNN.nii.gz   int16 (x,y,z,T)
    nsddata_betas/ppdata/subjXX/func1pt8mm/betas_fithrf_GLMdenoise_RR/ncsnr.nii.gz     float (x,y,z): noise ceiling SNR
    nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5              dataset imgBrick (n_images, H, W, 3) uint8
    nsddata_stimuli/stimuli/nsd/annotations/captions_{train2017,val2017}.json   COCO captions
    nsddata/freesurfer/subjXX/surf/{lh,rh}.white              FreeSurfer surface (its triangles)
    nsddata/freesurfer/subjXX/surf/{lh,rh}.curv               FreeSurfer curvature (per vertex)
    nsddata/freesurfer/subjXX/surf/{lh,rh}.full.flat.patch.3d FreeSurfer flattened patch (binary)
    nsddata/ppdata/subjXX/transforms/{lh,rh}.func1pt8-to-layerB2.mgz   per-vertex func1pt8mm coordinates

The writers are low level (one file each, exactly the real format) and write through a temporary file renamed
into place, so a killed writer never leaves a truncated file under the real name.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from braindiff_app.atomic import atomic_path

__all__ = [
    # layout
    "N_SUBJECTS",
    "ROI_LABELS",
    "COCO_SPLITS",
    "expdesign_path",
    "stim_info_path",
    "roi_dir",
    "roi_path",
    "betas_dir",
    "betas_path",
    "ncsnr_path",
    "stimuli_path",
    "captions_path",
    "stim_info_pkl_path",
    "curated_captions_path",
    "session_from_betas_path",
    "HEMISPHERES",
    "freesurfer_surf_dir",
    "surface_path",
    "transforms_dir",
    "surface_transform_path",
    # writers
    "write_expdesign",
    "write_betas",
    "write_ncsnr",
    "write_roi",
    "write_stimuli",
    "write_stim_info",
    "write_captions",
    "PATCH_RECORD",
    "write_surface",
    "write_curv",
    "write_patch",
    "write_surface_transform",
]

N_SUBJECTS = 8
BETAS_KIND = "betas_fithrf_GLMdenoise_RR"
COCO_SPLITS = ("train2017", "val2017")
HEMISPHERES = ("lh", "rh")

# ROI files of func1pt8mm/roi and their labels (value -> name); 0 is unlabelled. nsdgeneral also uses -1 for
# voxels outside the brain.
ROI_LABELS: dict[str, dict[int, str]] = {
    "nsdgeneral": {1: "nsdgeneral"},
    "prf-visualrois": {1: "V1v", 2: "V1d", 3: "V2v", 4: "V2d", 5: "V3v", 6: "V3d", 7: "hV4"},
    "floc-faces": {1: "OFA", 2: "FFA-1", 3: "FFA-2", 4: "mTL-faces", 5: "aTL-faces"},
    "floc-words": {1: "OWFA", 2: "VWFA-1", 3: "VWFA-2", 4: "mfs-words", 5: "mTL-words"},
    "floc-places": {1: "OPA", 2: "PPA", 3: "RSC"},
    "floc-bodies": {1: "EBA", 2: "FBA-1", 3: "FBA-2", 4: "mTL-bodies"},
    "prf-eccrois": {1: "ecc0pt5", 2: "ecc1", 3: "ecc2", 4: "ecc4", 5: "ecc4+"},
}


# --------------------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------------------
def _subj(subject: int) -> str:
    subject = int(subject)
    if not 1 <= subject <= N_SUBJECTS:
        raise ValueError(f"subject: expected an NSD subject number 1-{N_SUBJECTS}, got {subject}.")
    return f"subj{subject:02d}"


def expdesign_path(root: str | os.PathLike) -> Path:
    """``nsd_expdesign.mat``: the experimental design (MATLAB v5)."""
    return Path(root) / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"


def stim_info_path(root: str | os.PathLike) -> Path:
    """``nsd_stim_info_merged.csv``: NSD id -> COCO id and split."""
    return Path(root) / "nsddata" / "experiments" / "nsd" / "nsd_stim_info_merged.csv"


def roi_dir(root: str | os.PathLike, subject: int) -> Path:
    """A subject's func1pt8mm ROI folder."""
    return Path(root) / "nsddata" / "ppdata" / _subj(subject) / "func1pt8mm" / "roi"


def roi_path(root: str | os.PathLike, subject: int, name: str) -> Path:
    """One ROI volume, e.g. ``name="nsdgeneral"`` -> ``.../roi/nsdgeneral.nii.gz`` (names in ``ROI_LABELS``)."""
    if name not in ROI_LABELS:
        raise ValueError(f"name: expected one of {', '.join(ROI_LABELS)}, got {name!r}.")
    return roi_dir(root, subject) / f"{name}.nii.gz"


def betas_dir(root: str | os.PathLike, subject: int) -> Path:
    """A subject's func1pt8mm ``betas_fithrf_GLMdenoise_RR`` folder."""
    return Path(root) / "nsddata_betas" / "ppdata" / _subj(subject) / "func1pt8mm" / BETAS_KIND


def betas_path(root: str | os.PathLike, subject: int, session: int) -> Path:
    """One session's betas, ``betas_sessionNN.nii.gz`` (sessions count from 1)."""
    session = int(session)
    if session < 1:
        raise ValueError(f"session: expected a session number >= 1, got {session}.")
    return betas_dir(root, subject) / f"betas_session{session:02d}.nii.gz"


def ncsnr_path(root: str | os.PathLike, subject: int) -> Path:
    """``ncsnr.nii.gz`` beside the betas: each voxel's noise-ceiling signal-to-noise ratio (NSD data manual)."""
    return betas_dir(root, subject) / "ncsnr.nii.gz"


def session_from_betas_path(path: str | os.PathLike) -> int | None:
    """The session number of a ``betas_sessionNN.nii.gz`` file name, or None for any other name."""
    name = Path(path).name
    prefix, suffix = "betas_session", ".nii.gz"
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    digits = name[len(prefix):-len(suffix)]
    return int(digits) if digits.isdigit() else None


def stimuli_path(root: str | os.PathLike) -> Path:
    """``nsd_stimuli.hdf5``: dataset ``imgBrick`` (n_images, height, width, 3) uint8, by 0-based NSD id."""
    return Path(root) / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5"


def stim_info_pkl_path(root: str | os.PathLike) -> Path:
    """``nsd_stim_info_merged.pkl``: the same table as a pandas pickle (the reference's download script's)."""
    return stim_info_path(root).with_suffix(".pkl")


def curated_captions_path(root: str | os.PathLike) -> Path:
    """``COCO_73k_annots_curated.npy``: the reference's captions, (73000, 5) str by NSD id, '' where absent.

    Not part of NSD: the reference repo ships it (``data/annots/``); braindiff looks for it beside COCO's captions.
    """
    return Path(root) / "nsddata_stimuli" / "stimuli" / "nsd" / "annotations" / "COCO_73k_annots_curated.npy"


def captions_path(root: str | os.PathLike, split: str) -> Path:
    """COCO captions of one split (``"train2017"`` or ``"val2017"``)."""
    if split not in COCO_SPLITS:
        raise ValueError(f"split: expected one of {', '.join(COCO_SPLITS)}, got {split!r}.")
    return Path(root) / "nsddata_stimuli" / "stimuli" / "nsd" / "annotations" / f"captions_{split}.json"


def _hemi(hemi: str) -> str:
    if hemi not in HEMISPHERES:
        raise ValueError(f"hemi: expected one of {', '.join(HEMISPHERES)}, got {hemi!r}.")
    return hemi


def freesurfer_surf_dir(root: str | os.PathLike, subject: int) -> Path:
    """A subject's FreeSurfer ``surf`` folder, ``nsddata/freesurfer/subjXX/surf``."""
    return Path(root) / "nsddata" / "freesurfer" / _subj(subject) / "surf"


def surface_path(root: str | os.PathLike, subject: int, hemi: str, name: str) -> Path:
    """One FreeSurfer file of a hemisphere, e.g. ``name="white"`` -> ``surf/lh.white``.

    ``name`` is the FreeSurfer suffix: ``white``, ``pial``, ``curv``, ``full.flat.patch.3d``, ...
    """
    return freesurfer_surf_dir(root, subject) / f"{_hemi(hemi)}.{name}"


def transforms_dir(root: str | os.PathLike, subject: int) -> Path:
    """A subject's transforms folder, ``nsddata/ppdata/subjXX/transforms``."""
    return Path(root) / "nsddata" / "ppdata" / _subj(subject) / "transforms"


def surface_transform_path(root: str | os.PathLike, subject: int, hemi: str, surface: str = "layerB2",
                           space: str = "func1pt8") -> Path:
    """A volume-to-surface transform, e.g. ``transforms/lh.func1pt8-to-layerB2.mgz``.

    NSD's name is ``<hemi>.<volume space>-to-<surface>.mgz`` (nsdcode's ``nsd_mapdata``): an MGH array of shape
    (n_vertices, 1, 1, 3) holding, for each vertex of the surface, its decimal position in the volume's voxel grid,
    1-based (MATLAB), 9999 where the vertex has no position. Surfaces ``white``, ``pial`` and the three cortical
    depths ``layerB1`` (near pial), ``layerB2`` (middle), ``layerB3`` (near white) share the vertices of ``white``.
    """
    return transforms_dir(root, subject) / f"{_hemi(hemi)}.{space}-to-{surface}.mgz"


# --------------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------------
def write_expdesign(root: str | os.PathLike, masterordering: np.ndarray, subjectim: np.ndarray,
                    sharedix: np.ndarray) -> Path:
    """Write ``nsd_expdesign.mat`` (MATLAB v5, as NSD ships it: 1-based indices, row vectors).

    Parameters
    ----------
    root : path
        NSD root.
    masterordering : array of shape (n_trials_total,) or (1, n_trials_total), int
        Per trial, the 1-based index into the subject's 10k list (values <= n_shared are shared images).
    subjectim : array of shape (8, n_per_subject), int
        Per subject, 1-based NSD image ids (73k space); the first ``n_shared`` columns are the shared images.
    sharedix : array of shape (n_shared,) or (1, n_shared), int
        1-based NSD ids of the shared images.

    Returns
    -------
    Path
        The file written.
    """
    from scipy.io import savemat

    subjectim = np.asarray(subjectim)
    if subjectim.ndim != 2 or subjectim.shape[0] != N_SUBJECTS:
        raise ValueError(f"subjectim: expected shape ({N_SUBJECTS}, n_per_subject), got {subjectim.shape}.")
    path = expdesign_path(root)
    data = {
        "masterordering": np.asarray(masterordering, dtype=np.float64).reshape(1, -1),
        "subjectim": subjectim.astype(np.float64),
        "sharedix": np.asarray(sharedix, dtype=np.float64).reshape(1, -1),
    }
    with atomic_path(path) as tmp:
        savemat(tmp, data, format="5")
    return path


def _write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray | None) -> Path:
    import nibabel as nib

    affine = np.diag([1.8, 1.8, 1.8, 1.0]) if affine is None else np.asarray(affine, dtype=float)
    image = nib.Nifti1Image(np.asfortranarray(volume), affine)  # NIfTI's order: written without re-copying
    image.header.set_data_dtype(volume.dtype)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return path


def write_betas(root: str | os.PathLike, subject: int, session: int, betas: np.ndarray,
                affine: np.ndarray | None = None) -> Path:
    """Write one session's betas, ``betas_sessionNN.nii.gz``.

    Parameters
    ----------
    root : path
        NSD root.
    subject, session : int
        NSD subject (1-8) and session (from 1).
    betas : array of shape (x, y, z, n_trials), int16
        Percent signal change x 300, as NSD stores them.
    affine : array of shape (4, 4), optional
        Voxel -> mm transform (default: 1.8 mm isotropic at the origin).
    """
    betas = np.asarray(betas)
    if betas.ndim != 4 or betas.dtype != np.int16:
        raise ValueError(f"betas: expected an int16 4D array (x, y, z, n_trials), got {betas.dtype} "
                         f"array of shape {betas.shape}.")
    return _write_nifti(betas_path(root, subject, session), betas, affine)


def write_ncsnr(root: str | os.PathLike, subject: int, ncsnr: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write a subject's ``ncsnr.nii.gz`` (float32, one noise-ceiling SNR per voxel of the func1pt8mm grid).

    Parameters
    ----------
    ncsnr : array of shape (x, y, z), float
        Signal SD over noise SD per voxel (dimensionless, >= 0).
    """
    ncsnr = np.asarray(ncsnr)
    if ncsnr.ndim != 3 or not np.issubdtype(ncsnr.dtype, np.floating):
        raise ValueError(f"ncsnr: expected a float 3D array (x, y, z), got {ncsnr.dtype} array of shape "
                         f"{ncsnr.shape}.")
    return _write_nifti(ncsnr_path(root, subject), ncsnr.astype(np.float32), affine)


def write_roi(root: str | os.PathLike, subject: int, name: str, volume: np.ndarray,
              affine: np.ndarray | None = None) -> Path:
    """Write one ROI volume ``roi/<name>.nii.gz`` (int labels, see ``ROI_LABELS``).

    Parameters
    ----------
    volume : array of shape (x, y, z), int
        Labels; 0 unlabelled (nsdgeneral: -1 outside the brain, 0, 1).
    """
    volume = np.asarray(volume)
    if volume.ndim != 3 or not np.issubdtype(volume.dtype, np.integer):
        raise ValueError(f"volume: expected an integer 3D array (x, y, z), got {volume.dtype} array of shape "
                         f"{volume.shape}.")
    return _write_nifti(roi_path(root, subject, name), volume.astype(np.int16), affine)


def write_stimuli(root: str | os.PathLike, images: np.ndarray, chunk: int = 64) -> Path:
    """Write ``nsd_stimuli.hdf5`` with dataset ``imgBrick`` (row i = NSD id i).

    Parameters
    ----------
    images : array of shape (n_images, height, width, 3), uint8
        Written in slices of ``chunk`` images, so a memory-mapped source is never loaded whole.
    chunk : int, default 64
        Images per write (and per HDF5 chunk).
    """
    import h5py

    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 (n_images, height, width, 3), got {images.dtype} array of "
                         f"shape {images.shape}.")
    path = stimuli_path(root)
    n = images.shape[0]
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            ds = fh.create_dataset("imgBrick", shape=images.shape, dtype=np.uint8,
                                   chunks=(min(chunk, n), *images.shape[1:]) if n else None)
            for start in range(0, n, chunk):
                ds[start:start + chunk] = images[start:start + chunk]
    return path


def write_stim_info(root: str | os.PathLike, nsd_ids: Sequence[int], coco_ids: Sequence[int],
                    coco_splits: Sequence[str]) -> Path:
    """Write ``nsd_stim_info_merged.csv`` with the columns the reader uses (and NSD's unnamed index column).

    Parameters
    ----------
    nsd_ids : sequence of int
        0-based NSD ids.
    coco_ids : sequence of int
        The COCO image id of each.
    coco_splits : sequence of str in {"train2017", "val2017"}
        The COCO split holding each image's captions.
    """
    if not len(nsd_ids) == len(coco_ids) == len(coco_splits):
        raise ValueError(f"nsd_ids, coco_ids, coco_splits: expected equal lengths, got {len(nsd_ids)}, "
                         f"{len(coco_ids)}, {len(coco_splits)}.")
    bad = sorted(set(coco_splits) - set(COCO_SPLITS))
    if bad:
        raise ValueError(f"coco_splits: expected values in {COCO_SPLITS}, got {bad}.")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["", "cocoId", "cocoSplit", "nsdId", "shared1000"])
    for row, (nsd_id, coco_id, split) in enumerate(zip(nsd_ids, coco_ids, coco_splits, strict=True)):
        writer.writerow([row, int(coco_id), split, int(nsd_id), False])
    path = stim_info_path(root)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return path


def write_captions(root: str | os.PathLike, split: str, captions: Mapping[int, Sequence[str]]) -> Path:
    """Write a COCO captions file ``captions_<split>.json``.

    Parameters
    ----------
    split : str in {"train2017", "val2017"}
    captions : mapping of int to sequence of str
        COCO image id -> its captions (COCO has 5, sometimes more).
    """
    annotations = []
    for image_id, texts in captions.items():
        for text in texts:
            annotations.append({"image_id": int(image_id), "id": len(annotations) + 1, "caption": str(text)})
    doc = {"images": [{"id": int(i)} for i in captions], "annotations": annotations}
    path = captions_path(root, split)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc))
    return path


def write_surface(root: str | os.PathLike, subject: int, hemi: str, name: str, coords: np.ndarray,
                  faces: np.ndarray) -> Path:
    """Write a FreeSurfer triangle surface ``surf/<hemi>.<name>`` (e.g. ``name="white"``).

    Parameters
    ----------
    coords : array of shape (n_vertices, 3), float
        Vertex positions, mm (FreeSurfer's surface RAS).
    faces : array of shape (n_triangles, 3), int
        Vertex indices (0-based) of each triangle.
    """
    from nibabel.freesurfer import write_geometry

    coords, faces = np.asarray(coords, dtype=np.float64), np.asarray(faces)
    if coords.ndim != 2 or coords.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"coords, faces: expected shapes (n_vertices, 3) and (n_triangles, 3), got {coords.shape} "
                         f"and {faces.shape}.")
    path = surface_path(root, subject, hemi, name)
    with atomic_path(path) as tmp:
        write_geometry(str(tmp), coords, faces.astype(np.int32))
    return path


def write_curv(root: str | os.PathLike, subject: int, hemi: str, values: np.ndarray, name: str = "curv") -> Path:
    """Write a FreeSurfer per-vertex file ``surf/<hemi>.curv`` (curvature; ``name`` for sulc, thickness, ...).

    Parameters
    ----------
    values : array of shape (n_vertices,), float
    """
    from nibabel.freesurfer import write_morph_data

    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 1:
        raise ValueError(f"values: expected shape (n_vertices,), got {values.shape}.")
    path = surface_path(root, subject, hemi, name)
    with atomic_path(path) as tmp:
        write_morph_data(str(tmp), values)
    return path


#: One record of a FreeSurfer binary patch: 1-based vertex number (negative on the patch border) and x, y, z.
PATCH_RECORD = np.dtype([("vertex", ">i4"), ("x", ">f4"), ("y", ">f4"), ("z", ">f4")])


def write_patch(root: str | os.PathLike, subject: int, hemi: str, vertices: np.ndarray, xyz: np.ndarray,
                border: np.ndarray | None = None, name: str = "full.flat.patch.3d") -> Path:
    """Write a FreeSurfer binary patch ``surf/<hemi>.full.flat.patch.3d`` (a flattened piece of a surface).

    The format (FreeSurfer's ``read_patch``): big-endian int32 -1, int32 n_points, then per point an int32 vertex
    number (``vertex + 1``, or ``-(vertex + 1)`` on the patch border) and float32 x, y, z (flat patches: z = 0).

    Parameters
    ----------
    vertices : array of shape (n_points,), int
        0-based vertex indices into the hemisphere's surfaces.
    xyz : array of shape (n_points, 3), float
        Patch coordinates, mm.
    border : array of shape (n_points,), bool, optional
        Points on the patch border (default: none).
    """
    vertices, xyz = np.asarray(vertices), np.asarray(xyz, dtype=np.float32)
    if vertices.ndim != 1 or xyz.shape != (len(vertices), 3):
        raise ValueError(f"vertices, xyz: expected shapes (n_points,) and (n_points, 3), got {vertices.shape} and "
                         f"{xyz.shape}.")
    border = np.zeros(len(vertices), bool) if border is None else np.asarray(border, bool)
    records = np.empty(len(vertices), PATCH_RECORD)
    records["vertex"] = np.where(border, -(vertices + 1), vertices + 1)
    records["x"], records["y"], records["z"] = xyz.T
    path = surface_path(root, subject, hemi, name)
    with atomic_path(path) as tmp:
        tmp.write_bytes(np.array([-1, len(vertices)], ">i4").tobytes() + records.tobytes())
    return path


def write_surface_transform(root: str | os.PathLike, subject: int, hemi: str, coords: np.ndarray,
                            surface: str = "layerB2", space: str = "func1pt8") -> Path:
    """Write a volume-to-surface transform ``transforms/<hemi>.func1pt8-to-layerB2.mgz`` (see
    :func:`surface_transform_path` for the meaning).

    Parameters
    ----------
    coords : array of shape (n_vertices, 3), float
        Each vertex's 1-based decimal voxel position in the volume space; 9999 where it has none.
    """
    import nibabel as nib

    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords: expected shape (n_vertices, 3), got {coords.shape}.")
    path = surface_transform_path(root, subject, hemi, surface, space)
    with atomic_path(path) as tmp:
        nib.save(nib.MGHImage(coords.reshape(len(coords), 1, 1, 3), np.eye(4)), str(tmp))
    return path

"""ROI atlases: which of a subject's nsdgeneral voxels belong to V1, faces, the 2-4 degree band, ...

Regions come from the NSD ROI files of the NSD layout (``nsddata/ppdata/subjXX/func1pt8mm/roi/*.nii.gz``), the same
files the simulated subject writes, and are restricted to the subject's nsdgeneral voxels in the order of the
prepared data (``voxel_ijk.npy``), so a region is a set of column indices into ``fmri_test.npy``:

- V1 = prf-visualrois labels 1-2 (V1v, V1d), V2 = 3-4, V3 = 5-6, hV4 = 7 (from prf-visualrois, not, as the
  reference code did, from floc-faces);
- faces, words, places, bodies = the union of every label of their floc file (the paper's unions);
- ecc0.5, ecc1, ecc2, ecc4, ecc4+ = prf-eccrois labels 1..5 (0-0.5, 0.5-1, 1-2, 2-4 and over 4 degrees).

A region with no voxel (or whose file is absent) is kept in :attr:`ROIAtlas.absent` with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from braindiff_app.data.nsd_layout import roi_dir, roi_path

__all__ = [
    # region vocabulary
    "REGION_SOURCES",
    "REGION_LABELS",
    "VISUAL_REGIONS",
    "CATEGORY_REGIONS",
    "ECCENTRICITY_REGIONS",
    "ALL_REGIONS",
    "canonical_region",
    # atlases
    "ROIAtlas",
    "load_atlas",
    "nsdgeneral_voxels",
    "read_label_volume",
]

#: region name -> (ROI file stem, labels); ``None`` labels = every positive label of the file.
REGION_SOURCES: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "V1": ("prf-visualrois", (1, 2)),
    "V2": ("prf-visualrois", (3, 4)),
    "V3": ("prf-visualrois", (5, 6)),
    "hV4": ("prf-visualrois", (7,)),
    "faces": ("floc-faces", None),
    "words": ("floc-words", None),
    "places": ("floc-places", None),
    "bodies": ("floc-bodies", None),
    "ecc0.5": ("prf-eccrois", (1,)),
    "ecc1": ("prf-eccrois", (2,)),
    "ecc2": ("prf-eccrois", (3,)),
    "ecc4": ("prf-eccrois", (4,)),
    "ecc4+": ("prf-eccrois", (5,)),
}
REGION_LABELS = {
    "V1": "V1", "V2": "V2", "V3": "V3", "hV4": "hV4",
    "faces": "Face-ROI", "words": "Word-ROI", "places": "Place-ROI", "bodies": "Body-ROI",
    "ecc0.5": "0°-0.5°", "ecc1": "0.5°-1°", "ecc2": "1°-2°", "ecc4": "2°-4°", "ecc4+": ">4°",
}
VISUAL_REGIONS = ("V1", "V2", "V3", "hV4")
CATEGORY_REGIONS = ("faces", "words", "places", "bodies")
ECCENTRICITY_REGIONS = ("ecc0.5", "ecc1", "ecc2", "ecc4", "ecc4+")
ALL_REGIONS = VISUAL_REGIONS + CATEGORY_REGIONS + ECCENTRICITY_REGIONS
# "V4" is what the paper calls hV4 (the NSD label); accepted as an alias.
_BY_LOWER = {**{name.lower(): name for name in ALL_REGIONS}, "v4": "hV4"}


def canonical_region(name: str) -> str:
    """The canonical spelling of a region name, matched case-insensitively ("v1" -> "V1", "FACES" -> "faces", "V4"
    -> "hV4").

    Raises
    ------
    ValueError
        If ``name`` is not a known region; the message lists the known ones.
    """
    key = str(name).strip().lower()
    if key not in _BY_LOWER:
        raise ValueError(f"region: unknown region {name!r}; expected one of {', '.join(ALL_REGIONS)}.")
    return _BY_LOWER[key]


@dataclass(frozen=True)
class ROIAtlas:
    """One subject's regions as sets of voxel indices into its nsdgeneral voxels.

    Attributes
    ----------
    subject : str
        Subject label (``"1"``, ``"2"``, ...).
    n_voxels : int
        Number of nsdgeneral voxels (columns of the prepared fMRI).
    regions : mapping of str to array of shape (n_region_voxels,), int64
        Sorted voxel indices of every region present.
    absent : mapping of str to str
        Region name -> why it is missing (e.g. ``"subject 1 has no hV4 voxels"``).
    voxel_ijk : array of shape (n_voxels, 3), int, or None
        The voxels' indices in the functional grid (for flatmap lookups).
    grid_shape : tuple of 3 int, or None
        Shape (x, y, z) of the functional grid.
    """

    subject: str
    n_voxels: int
    regions: Mapping[str, np.ndarray]
    absent: Mapping[str, str]
    voxel_ijk: np.ndarray | None = None
    grid_shape: tuple[int, int, int] | None = None

    def indices(self, name: str) -> np.ndarray:
        """Voxel indices of region ``name`` (any capitalisation), shape (n_region_voxels,).

        Raises
        ------
        ValueError
            Unknown region, or a region this subject lacks (with the reason).
        """
        name = canonical_region(name)
        if name not in self.regions:
            reason = self.absent.get(name, f"subject {self.subject} has no {name} voxels")
            raise ValueError(f"region {name!r} is not available for subject {self.subject}: {reason}.")
        return self.regions[name]

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of region ``name`` over the voxels, shape (n_voxels,)."""
        mask = np.zeros(self.n_voxels, dtype=bool)
        mask[self.indices(name)] = True
        return mask


def read_label_volume(path: str | os.PathLike) -> np.ndarray:
    """An NSD ROI volume's labels as integers, shape (x, y, z) (ValueError when the file is not 3D)."""
    import nibabel as nib

    data = np.asanyarray(nib.load(str(path)).dataobj)
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D label volume (x, y, z), got shape {data.shape}.")
    return np.rint(data).astype(np.int64)


def nsdgeneral_voxels(nsd_dir: str | os.PathLike, subject: int | str) -> np.ndarray:
    """The nsdgeneral voxels' grid indices in C order (the order of the prepared fMRI columns).

    Returns
    -------
    array of shape (n_voxels, 3), int64
    """
    path = roi_path(nsd_dir, int(subject), "nsdgeneral")
    if not path.exists():
        raise FileNotFoundError(f"{path}: the subject's nsdgeneral mask is missing; check the NSD folder and "
                                "subject (demo tier: `braindiff demo simulate` writes it), or pass voxel_ijk.")
    return np.argwhere(read_label_volume(path) > 0)


def load_atlas(
    nsd_dir: str | os.PathLike,
    subject: int | str,
    voxel_ijk: np.ndarray | None = None,
) -> ROIAtlas:
    """Build a subject's ROI atlas from its NSD ROI files, restricted to its nsdgeneral voxels.

    Parameters
    ----------
    nsd_dir : path
        Root of an NSD-shaped folder (real NSD or the simulated one), holding ``nsddata/ppdata/...``.
    subject : int or str
        Subject number.
    voxel_ijk : array of shape (n_voxels, 3), int, optional
        The nsdgeneral voxels' grid indices in the order of the prepared fMRI columns (``voxel_ijk.npy`` of the
        prepared subject). Default: read from ``nsdgeneral.nii.gz`` in C order, the order ``prepare`` uses.

    Returns
    -------
    ROIAtlas
        Regions named in :data:`ALL_REGIONS`; those without voxels (or whose file is missing) in ``absent``.

    Raises
    ------
    FileNotFoundError
        If ``voxel_ijk`` is None and the nsdgeneral mask is missing.
    ValueError
        If ``voxel_ijk`` is not (n_voxels, 3) or points outside the ROI volumes' grid.
    """
    folder = roi_dir(nsd_dir, int(subject))
    if voxel_ijk is None:
        voxel_ijk = nsdgeneral_voxels(nsd_dir, subject)
    voxel_ijk = np.asarray(voxel_ijk)
    if voxel_ijk.ndim != 2 or voxel_ijk.shape[1] != 3 or not np.issubdtype(voxel_ijk.dtype, np.integer):
        raise ValueError(f"voxel_ijk: expected an integer array of shape (n_voxels, 3), got {voxel_ijk.dtype} "
                         f"array of shape {voxel_ijk.shape}.")
    label = str(int(subject))
    regions: dict[str, np.ndarray] = {}
    absent: dict[str, str] = {}
    volumes: dict[str, np.ndarray | None] = {}
    grid_shape = None
    for name, (stem, labels) in REGION_SOURCES.items():
        if stem not in volumes:
            path = roi_path(nsd_dir, int(subject), stem)
            volumes[stem], shape = _voxel_labels(path, voxel_ijk) if path.exists() else (None, None)
            grid_shape = grid_shape or shape
        values = volumes[stem]
        if values is None:
            absent[name] = f"{stem}.nii.gz is missing from {folder}"
            continue
        hit = values > 0 if labels is None else np.isin(values, labels)
        if not hit.any():
            absent[name] = f"subject {label} has no {name} voxels"
            continue
        regions[name] = np.flatnonzero(hit)
    return ROIAtlas(subject=label, n_voxels=len(voxel_ijk), regions=regions, absent=absent, voxel_ijk=voxel_ijk,
                    grid_shape=grid_shape)


def _voxel_labels(path: Path, voxel_ijk: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Labels of ``path`` at the given voxels, shape (n_voxels,), and the volume's grid shape."""
    volume = read_label_volume(path)
    if (voxel_ijk < 0).any() or (voxel_ijk >= np.asarray(volume.shape)).any():
        raise ValueError(f"voxel_ijk: indices fall outside {path.name}'s grid {volume.shape}; the prepared "
                         "voxels and the ROI files come from different subjects or resolutions.")
    return volume[voxel_ijk[:, 0], voxel_ijk[:, 1], voxel_ijk[:, 2]], tuple(volume.shape)

"""Read a Natural Scenes Dataset copy into a prepared subject (the prepared-subject files), one session at a time.

Steps of :func:`prepare_subject`:

1. check every NSD file it needs (a missing one is named with the folder it belongs in);
2. read the design: each trial's NSD image and whether it is a shared (test) image;
3. read each session's betas (one session in memory at a time), keep the nsdgeneral voxels, and save them as a
   per-session partial file (int16, lossless) so a killed run resumes at the next session;
4. average each image's repetitions; shared images -> test, the rest -> train (counts come from the data);
5. copy the stimuli from ``nsd_stimuli.hdf5`` by index, in slices (never all 73k images);
6. gather each image's captions (COCO's JSON files, the first 5; or the reference's curated .npy, all it holds:
   the protocol's ``caption_source`` and ``caption_selection``);
7. write ``meta.json`` last: its presence with the same plan marks the subject as complete;
8. when the subject's ``ncsnr.nii.gz`` is there, its values at the prepared voxels -> ``ncsnr.npy`` (optional:
   the encoder's noise-normalised accuracy needs it; without the file a note says so and nothing is written).

Every output file is written through a temporary name and renamed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from braindiff_app.atomic import atomic_path, atomic_save_npy, atomic_write_json, read_json_mark
from braindiff_app.data import nsd_layout as L
from braindiff_app.protocol import PAPER_SESSIONS, Protocol, get_protocol

__all__ = ["ExpDesign", "PrepareResult", "read_expdesign", "read_mask", "read_session", "find_sessions",
           "check_nsd_files", "default_sessions", "prepare_subject", "read_ncsnr", "PREPARED_FILES", "NCSNR_FILE",
           "N_CAPTIONS"]

N_CAPTIONS = 5
PREPARED_FILES = ("fmri_train.npy", "fmri_test.npy", "images_train.npy", "images_test.npy", "captions_train.json",
                  "captions_test.json", "voxel_ijk.npy", "meta.json")
#: Optional prepared file: each voxel's NSD noise-ceiling SNR, float32 (n_voxels,), voxel_ijk's order.
NCSNR_FILE = "ncsnr.npy"
_PARTIAL = ".partial"
_HELP = "see docs/real_data.md for the NSD files braindiff needs"


def _missing(path: Path, root: Path, what: str) -> FileNotFoundError:
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    return FileNotFoundError(f"{path.name} not found: {what} belongs at <nsd-root>/{rel} (nsd-root is {root}); "
                             f"{_HELP}.")


# --------------------------------------------------------------------------------------------------------
# Design
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpDesign:
    """NSD's experimental design, as stored (1-based indices).

    Attributes
    ----------
    masterordering : array of shape (n_trials_total,), int64
        Per trial, 1-based index into a subject's image list.
    subjectim : array of shape (8, n_per_subject), int64
        Per subject, 1-based NSD ids.
    sharedix : array of shape (n_shared,), int64
        1-based NSD ids of the shared images.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray

    def trial_images(self, subject: int) -> tuple[np.ndarray, np.ndarray]:
        """Each trial's 0-based NSD id and whether it shows a shared (test) image.

        Returns
        -------
        nsd_ids : array of shape (n_trials_total,), int64
        shared : array of shape (n_trials_total,), bool
            ``masterordering <= n_shared``.
        """
        nsd_ids = self.subjectim[int(subject) - 1, self.masterordering - 1] - 1
        return nsd_ids, self.masterordering <= len(self.sharedix)


def read_expdesign(root: str | os.PathLike) -> ExpDesign:
    """Read ``nsd_expdesign.mat`` (variables masterordering, subjectim, sharedix)."""
    from scipy.io import loadmat

    root = Path(root)
    path = L.expdesign_path(root)
    if not path.is_file():
        raise _missing(path, root, "the NSD experimental design")
    try:
        mat = loadmat(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable MATLAB file ({exc}); re-download nsd_expdesign.mat.") from None
    missing = [k for k in ("masterordering", "subjectim", "sharedix") if k not in mat]
    if missing:
        raise ValueError(f"{path}: lacks variable(s) {', '.join(missing)}; expected NSD's nsd_expdesign.mat.")
    design = ExpDesign(*(np.asarray(mat[k]).astype(np.int64) for k in ("masterordering", "subjectim", "sharedix")))
    design = ExpDesign(design.masterordering.ravel(), design.subjectim, design.sharedix.ravel())
    if design.subjectim.ndim != 2 or design.subjectim.shape[0] != L.N_SUBJECTS:
        raise ValueError(f"{path}: subjectim should have shape ({L.N_SUBJECTS}, n_images), got "
                         f"{design.subjectim.shape}.")
    if design.masterordering.min() < 1 or design.masterordering.max() > design.subjectim.shape[1]:
        raise ValueError(f"{path}: masterordering values must lie in 1..{design.subjectim.shape[1]}.")
    return design


# --------------------------------------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------------------------------------
def _load_nifti(path: Path, root: Path, what: str) -> Any:
    import nibabel as nib

    if not path.is_file():
        raise _missing(path, root, what)
    try:
        return nib.load(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable NIfTI file ({exc}); re-download it.") from None


def _read_volume(path: Path, read) -> np.ndarray:
    """``read()`` as an array; a truncated or corrupt .nii.gz becomes a ValueError naming the file."""
    import zlib

    try:
        return np.asarray(read())
    except (EOFError, zlib.error, OSError) as exc:
        raise ValueError(f"{path}: truncated or corrupt ({type(exc).__name__}: {exc}); re-download it.") from None


def read_mask(root: str | os.PathLike, subject: int) -> np.ndarray:
    """The nsdgeneral mask, array of shape (x, y, z), bool (label 1)."""
    root = Path(root)
    path = L.roi_path(root, subject, "nsdgeneral")
    image = _load_nifti(path, root, "the nsdgeneral ROI (func1pt8mm)")
    volume = _read_volume(path, lambda: image.dataobj)
    if volume.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume (x, y, z), got shape {volume.shape}.")
    mask = volume == 1
    if not mask.any():
        raise ValueError(f"{path}: no voxel has label 1 (nsdgeneral); is this the right file?")
    return mask


def find_sessions(root: str | os.PathLike, subject: int) -> list[int]:
    """Session numbers whose ``betas_sessionNN.nii.gz`` is present, sorted."""
    folder = L.betas_dir(root, subject)
    if not folder.is_dir():
        return []
    return sorted(s for s in map(L.session_from_betas_path, folder.iterdir()) if s is not None)


def read_session(root: str | os.PathLike, subject: int, session: int, mask: np.ndarray,
                 chunk_trials: int = 50) -> np.ndarray:
    """One session's betas at the mask's voxels, read ``chunk_trials`` trials at a time (a real session,
    81 x 104 x 83 x 750 int16, is 1 GB in full; a chunk of 50 is 70 MB).

    Returns
    -------
    array of shape (n_trials_in_session, n_voxels), int16
        NSD file units (percent signal change x 300); voxels in ``np.argwhere(mask)`` order.
    """
    root = Path(root)
    path = L.betas_path(root, subject, session)
    image = _load_nifti(path, root, f"session {session}'s betas ({L.BETAS_KIND}, func1pt8mm)")
    if len(image.shape) != 4 or tuple(image.shape[:3]) != mask.shape:
        raise ValueError(f"{path.name}: expected a 4D array {mask.shape + ('n_trials',)} (the nsdgeneral grid), "
                         f"got shape {tuple(image.shape)}.")
    slope, inter = image.dataobj.slope, image.dataobj.inter
    if not ((np.isnan(slope) or slope == 1) and (np.isnan(inter) or inter == 0)):
        raise ValueError(f"{path.name}: header scaling (slope {slope}, intercept {inter}) found; NSD betas are "
                         "stored unscaled (int16 = percent signal change x 300).")
    dtype = image.header.get_data_dtype()
    if dtype.kind != "i" or dtype.itemsize != 2:
        raise ValueError(f"{path.name}: expected int16 betas (percent signal change x 300), got {dtype}.")
    return _read_volume(path, lambda: _masked_trials(path, image, mask, dtype, chunk_trials))


def _masked_trials(path: Path, image, mask: np.ndarray, dtype: np.dtype, chunk_trials: int) -> np.ndarray:
    """Stream the (x, y, z, n_trials) volume ``chunk_trials`` trials at a time (NIfTI is Fortran-ordered: each
    trial's volume is contiguous), keeping the mask's voxels: peak memory is one chunk, not the session."""
    from nibabel.openers import ImageOpener

    n_trials = int(image.shape[3])
    per_trial = int(np.prod(image.shape[:3]))
    out = np.empty((n_trials, int(mask.sum())), dtype=np.int16)
    with ImageOpener(path) as fh:
        fh.seek(int(image.dataobj.offset))
        for start in range(0, n_trials, chunk_trials):
            n = min(chunk_trials, n_trials - start)
            buf = fh.read(n * per_trial * dtype.itemsize)
            if len(buf) != n * per_trial * dtype.itemsize:
                raise EOFError(f"file ends inside trial {start + len(buf) // (per_trial * dtype.itemsize)} of "
                               f"{n_trials}")
            volume = np.frombuffer(buf, dtype=dtype).reshape((*image.shape[:3], n), order="F")
            out[start:start + n] = volume[mask].T
    return out


def read_ncsnr(root: str | os.PathLike, subject: int, voxel_ijk: np.ndarray, grid_shape: Sequence[int]
               ) -> np.ndarray | None:
    """The subject's ``ncsnr.nii.gz`` at the given voxels, or None when the file is absent.

    Parameters
    ----------
    voxel_ijk : array of shape (n_voxels, 3), int
        The prepared voxels (``voxel_ijk.npy``'s order).
    grid_shape : 3 ints
        The nsdgeneral grid (x, y, z): the file must have this shape.

    Returns
    -------
    array of shape (n_voxels,), float32, or None
        Noise-ceiling SNR (dimensionless).

    Raises
    ------
    ValueError
        Another shape, non-finite or negative values at the voxels (the message names the file).
    """
    root = Path(root)
    path = L.ncsnr_path(root, subject)
    if not path.is_file():
        return None
    image = _load_nifti(path, root, "the noise-ceiling SNR")
    volume = _read_volume(path, lambda: image.get_fdata(dtype=np.float32))
    if volume.shape != tuple(grid_shape):
        raise ValueError(f"{path}: expected a 3D volume of shape {tuple(grid_shape)} (the nsdgeneral grid), got "
                         f"{volume.shape}.")
    values = volume[tuple(np.asarray(voxel_ijk).T)].astype(np.float32)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} of the {len(values)} nsdgeneral voxels hold NaN, infinite or "
                         "negative values; expected a finite ncsnr >= 0 at each; re-download it.")
    return values


def _write_ncsnr(values: np.ndarray | None, root: Path, subject: int, out_dir: Path) -> tuple[str, ...]:
    """Step 8: ``ncsnr.npy`` (:func:`read_ncsnr`'s values); the notes to print (one when the file is absent)."""
    if values is None:
        (out_dir / NCSNR_FILE).unlink(missing_ok=True)
        return (f"no {L.ncsnr_path(root, subject).name} at {L.betas_dir(root, subject)}: {NCSNR_FILE} not "
                "written, so the encoder reports raw r only (no noise-ceiling normalisation)",)
    atomic_save_npy(out_dir / NCSNR_FILE, values)
    return ()


# --------------------------------------------------------------------------------------------------------
# Stimuli and captions
# --------------------------------------------------------------------------------------------------------
def _read_stim_info(root: Path) -> dict[int, tuple[int, str]]:
    path = L.stim_info_path(root)
    if not path.is_file() and L.stim_info_pkl_path(root).is_file():
        raise FileNotFoundError(f"{path}: not found; {L.stim_info_pkl_path(root).name} is there, but braindiff does "
                                "not open pickles (loading one can run any code it holds). Download the same table "
                                f"as nsd_stim_info_merged.csv from NSD into {path.parent}.")
    if not path.is_file():
        raise _missing(path, root, "the NSD stimulus table")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"nsdId", "cocoId", "cocoSplit"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: lacks column(s) {', '.join(sorted(missing))}; expected "
                             "nsd_stim_info_merged.csv from NSD.")
        return {int(r["nsdId"]): (int(r["cocoId"]), r["cocoSplit"]) for r in reader}


def _curated_captions(root: Path, nsd_ids: Sequence[int], keep: int | None) -> list[list[str]]:
    """Captions from the reference's ``COCO_73k_annots_curated.npy``: row = NSD id, '' entries dropped."""
    path = L.curated_captions_path(root)
    if not path.is_file():
        raise _missing(path, root, "the reference's curated COCO captions (from the brain-diffuser repo's "
                       "data/annots/; or prepare with --protocol braindiff for COCO's captions JSON)")
    table = np.load(path, allow_pickle=False)
    if table.ndim != 2 or table.dtype.kind not in "US":
        raise ValueError(f"{path}: expected a 2-D array of strings (n_images, n_captions), got {table.dtype} "
                         f"{table.shape}.")
    captions = []
    for i in nsd_ids:
        if i >= len(table):
            raise ValueError(f"{path}: has {len(table)} rows, but NSD id {i} is needed.")
        found = [str(c).strip() for c in table[i] if str(c).strip()]
        if not found:
            raise ValueError(f"{path}: no caption for NSD id {i}.")
        captions.append(found[:keep])
    return captions


def gather_captions(root: str | os.PathLike, nsd_ids: Sequence[int],
                    protocol: str | Protocol | None = None) -> list[list[str]]:
    """Each image's captions, by the protocol's source and selection.

    Parameters
    ----------
    root : path
        NSD root.
    nsd_ids : sequence of int
        0-based NSD ids.
    protocol : str in {"braindiff", "reference"} or Protocol, default "braindiff"
        ``caption_source``: "coco-json" (COCO's captions_{train,val}2017.json through the stimulus table, .csv or
        .pkl) or "curated-npy" (the reference's COCO_73k_annots_curated.npy); ``caption_selection``: "first-5"
        or "all" (every caption the source holds for the image).

    Returns
    -------
    list of list of str
    """
    protocol, root = get_protocol(protocol), Path(root)
    keep = N_CAPTIONS if protocol.caption_selection == "first-5" else None
    if protocol.caption_source == "curated-npy":
        return _curated_captions(root, nsd_ids, keep)
    return [c[:keep] for c in _gather_captions(root, nsd_ids, keep=None)]


def _gather_captions(root: Path, nsd_ids: Sequence[int], keep: int | None = N_CAPTIONS) -> list[list[str]]:
    info = _read_stim_info(root)
    absent = [i for i in nsd_ids if i not in info]
    if absent:
        raise ValueError(f"{L.stim_info_path(root)}: no row for NSD id(s) {absent[:5]}; is the file complete?")
    by_coco: dict[int, list[str]] = {}
    for split in sorted({info[i][1] for i in nsd_ids}):
        if split not in L.COCO_SPLITS:
            raise ValueError(f"{L.stim_info_path(root)}: cocoSplit {split!r} is not one of {L.COCO_SPLITS}.")
        path = L.captions_path(root, split)
        if not path.is_file():
            raise _missing(path, root, f"the COCO {split} captions")
        try:
            annotations = json.loads(path.read_text())["annotations"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}: expected COCO captions JSON with an 'annotations' list.") from None
        wanted = {info[i][0] for i in nsd_ids if info[i][1] == split}
        for ann in annotations:
            if ann["image_id"] in wanted:
                by_coco.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    captions = []
    for i in nsd_ids:
        coco_id, split = info[i]
        found = by_coco.get(coco_id, [])
        if not found:
            raise ValueError(f"{L.captions_path(root, split)}: no caption for COCO image {coco_id} (NSD id {i}).")
        captions.append(found[:keep])
    return captions


def _open_stimuli(root: Path, max_id: int):
    import h5py

    path = L.stimuli_path(root)
    if not path.is_file():
        raise _missing(path, root, "the NSD stimuli (imgBrick)")
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc}); re-download nsd_stimuli.hdf5.") from None
    brick = fh.get("imgBrick")
    if brick is None or brick.ndim != 4 or brick.shape[3] != 3 or brick.dtype != np.uint8:
        fh.close()
        raise ValueError(f"{path}: expected dataset 'imgBrick' of uint8 (n_images, height, width, 3).")
    if max_id >= brick.shape[0]:
        fh.close()
        raise ValueError(f"{path}: imgBrick has {brick.shape[0]} images, but the design needs NSD id {max_id}.")
    return fh, brick


def _copy_images(brick, nsd_ids: np.ndarray, path: Path, chunk: int, progress: bool) -> None:
    """Copy ``brick[nsd_ids]`` into a new .npy file, ``chunk`` images per progress step.

    Images are read one at a time: h5py's fancy indexing (``brick[[3, 17, ...]]``) was 100x slower than single
    reads on the demo's stimuli."""
    from tqdm.auto import tqdm

    with atomic_path(path) as tmp:  # removed on any error: no full-size temporary file is left behind
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(nsd_ids), *brick.shape[1:]))
        try:
            for start in tqdm(range(0, len(nsd_ids), chunk), desc=path.stem, unit="chunk", disable=not progress):
                for i, nsd_id in enumerate(nsd_ids[start:start + chunk], start):
                    try:
                        out[i] = brick[int(nsd_id)]
                    except (OSError, ValueError) as exc:
                        raise ValueError(f"{brick.file.filename}: cannot read image {int(nsd_id)} of imgBrick "
                                         f"({exc}); the file is corrupt: re-download nsd_stimuli.hdf5.") from None
            out.flush()
        finally:
            del out


# --------------------------------------------------------------------------------------------------------
# Prepare
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrepareResult:
    """Summary of a prepared subject."""

    out_dir: Path
    n_train: int
    n_test: int
    n_voxels: int
    sessions: tuple[int, ...]
    resumed_sessions: int
    notes: tuple[str, ...] = ()


def default_sessions(root: str | os.PathLike, subject: int, wanted: Sequence[int] = PAPER_SESSIONS) -> list[int]:
    """The sessions read when none are asked for: ``wanted`` (the paper's 1-37) up to the last the design holds.

    The design's session count is its trials over one session's trials (NSD: 30000 / 750 = 40; the demo's
    simulated NSD holds fewer).

    Raises
    ------
    FileNotFoundError
        No betas at all.
    """
    root = Path(root)
    present = find_sessions(root, subject)
    if not present:
        raise _missing(L.betas_path(root, subject, 1), root, "the single-trial betas (betas_sessionNN.nii.gz)")
    path = L.betas_path(root, subject, present[0])
    image = _load_nifti(path, root, "the single-trial betas")
    if len(image.shape) != 4 or image.shape[3] < 1:
        raise ValueError(f"{path.name}: expected a 4D array (x, y, z, n_trials), got shape {tuple(image.shape)}.")
    n_design = len(read_expdesign(root).masterordering) // int(image.shape[3])
    return [int(s) for s in wanted if s <= n_design]


def check_nsd_files(root: str | os.PathLike, subject: int, sessions: Sequence[int] | None = None,
                    protocol: str | Protocol | None = None) -> list[int]:
    """Check the files :func:`prepare_subject` needs exist; return the sessions to read.

    ``sessions=None`` means :func:`default_sessions` (1-37, the paper's: 982 test images on NSD); every session
    in the list must be present.

    Raises
    ------
    FileNotFoundError
        Naming the first missing file (a missing session by its file) and the folder it belongs in.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"nsd root {root}: no such folder; pass --nsd-root with your NSD copy "
                                f"(the folder holding nsddata/, nsddata_betas/, nsddata_stimuli/).")
    protocol = get_protocol(protocol)
    needed = [(L.expdesign_path(root), "the NSD experimental design"),
              (L.roi_path(root, subject, "nsdgeneral"), "the nsdgeneral ROI (func1pt8mm)"),
              (L.stimuli_path(root), "the NSD stimuli (imgBrick)")]
    if protocol.caption_source == "coco-json":
        pkl = " (its .pkl copy is never opened: unpickling a file can run any code it holds)" \
            if L.stim_info_pkl_path(root).is_file() else ""
        needed.append((L.stim_info_path(root), f"the NSD stimulus table nsd_stim_info_merged.csv{pkl}"))
    for path, what in needed:
        if not path.is_file():
            raise _missing(path, root, what)
    present = find_sessions(root, subject)
    default = sessions is None
    if default:
        sessions = default_sessions(root, subject)
    for s in sessions:
        if s not in present:
            why = " (the default is sessions 1-37, the paper's; pass --sessions for another list)" if default else ""
            raise _missing(L.betas_path(root, subject, s), root, f"session {s}'s betas{why}")
    return sorted(set(int(s) for s in sessions))


def prepare_subject(root: str | os.PathLike, subject: int, out_dir: str | os.PathLike,
                    sessions: Sequence[int] | None = None, image_chunk: int = 64,
                    progress: bool = True, protocol: str | Protocol | None = None) -> PrepareResult:
    """Prepare one NSD subject: averaged masked betas, stimuli and captions, split into train/test.

    Parameters
    ----------
    root : path
        NSD root (real, or the demo tier's simulated copy).
    subject : int
        NSD subject number (the paper uses 1, 2, 5, 7).
    out_dir : path
        Destination (``settings.subject_dir("prepared", subject)``); the prepared-subject files
        (docs/architecture.md) are written there.
    sessions : sequence of int, optional
        Sessions to read; default 1-37, the paper's (982 test images on NSD; fewer when the design holds fewer, as
        the demo's simulated NSD). A missing session is an error naming its file. Trials of other sessions are
        left out of the averages.
    image_chunk : int, default 64
        Stimuli copied per HDF5 read.
    progress : bool, default True
        tqdm progress bars.
    protocol : str in {"braindiff", "reference"} or Protocol, default "braindiff"
        Where captions come from and which are kept (see :func:`gather_captions`); recorded in ``meta.json``.

    Returns
    -------
    PrepareResult
    """
    from tqdm.auto import tqdm

    root, out_dir = Path(root), Path(out_dir)
    protocol = get_protocol(protocol)
    sessions = check_nsd_files(root, subject, sessions, protocol)
    design = read_expdesign(root)
    mask = read_mask(root, subject)
    voxel_ijk = np.argwhere(mask)
    ncsnr = read_ncsnr(root, subject, voxel_ijk, mask.shape)  # checked before the long work
    plan = {"nsd_root": str(root.resolve()), "subject": int(subject), "sessions": sessions,
            "n_voxels": len(voxel_ijk), "mask_shape": list(mask.shape)}
    if protocol.name != "braindiff":  # (a braindiff plan stays as before, so earlier preparations stay valid)
        plan["captions"] = {"source": protocol.caption_source, "selection": protocol.caption_selection}
    partial = out_dir / _PARTIAL
    meta_path = out_dir / "meta.json"
    meta = read_json_mark(meta_path)
    if meta is not None and meta.get("plan") == plan and all((out_dir / f).is_file() for f in PREPARED_FILES):
        notes = _write_ncsnr(ncsnr, root, subject, out_dir)
        return PrepareResult(out_dir, len(meta["nsd_ids_train"]), len(meta["nsd_ids_test"]), meta["n_voxels"],
                             tuple(sessions), len(sessions), notes)
    if read_json_mark(partial / "plan.json") != plan:
        shutil.rmtree(partial, ignore_errors=True)  # another plan's leftovers: start over
        for name in (*PREPARED_FILES, NCSNR_FILE):
            (out_dir / name).unlink(missing_ok=True)
        atomic_write_json(partial / "plan.json", plan)

    # 3. sessions, one in memory at a time -> partial files
    resumed = 0
    trials_per_session = None
    for session in tqdm(sessions, desc=f"subj{subject:02d} sessions", unit="session", disable=not progress):
        part = partial / f"session{session:02d}.npy"
        if part.is_file():
            resumed += 1
        else:
            atomic_save_npy(part, read_session(root, subject, session, mask))
        T = np.load(part, mmap_mode="r").shape[0]
        if trials_per_session not in (None, T):
            raise ValueError(f"{L.betas_path(root, subject, session).name}: {T} trials, but earlier sessions have "
                             f"{trials_per_session}; NSD sessions all have the same number of trials.")
        trials_per_session = T

    # 4. average repetitions; split
    nsd_ids, shared = design.trial_images(subject)
    n_trials = len(nsd_ids)
    if max(sessions) * trials_per_session > n_trials:
        raise ValueError(f"{L.expdesign_path(root)}: masterordering has {n_trials} trials, fewer than session "
                         f"{max(sessions)} x {trials_per_session} trials per session; design and betas disagree.")
    trials = np.concatenate([np.arange((s - 1) * trials_per_session, s * trials_per_session) for s in sessions])
    _, first = np.unique(nsd_ids[trials], return_index=True)
    first = trials[np.sort(first)]
    images = nsd_ids[first]  # order of first appearance, as the reference
    index = {int(i): k for k, i in enumerate(images)}
    sums = np.zeros((len(images), len(voxel_ijk)), dtype=np.float64)
    counts = np.zeros(len(images), dtype=np.int64)
    for session in sessions:
        betas = np.load(partial / f"session{session:02d}.npy")
        rows = np.array([index[int(nsd_ids[t])] for t in
                         range((session - 1) * trials_per_session, session * trials_per_session)])
        np.add.at(sums, rows, betas.astype(np.float64))
        np.add.at(counts, rows, 1)
    means = (sums / counts[:, None]).astype(np.float32)
    del sums
    is_test = shared[first]
    split = {"train": ~is_test, "test": is_test}
    for name, rows in split.items():
        if not rows.any():
            raise ValueError(f"{L.expdesign_path(root)}: no {name} image among the trials of sessions {sessions}; "
                             "read more sessions.")
        atomic_save_npy(out_dir / f"fmri_{name}.npy", means[rows])
    atomic_save_npy(out_dir / "voxel_ijk.npy", voxel_ijk.astype(np.int64))

    # 5. stimuli, by index
    fh, brick = _open_stimuli(root, int(images.max()))
    try:
        for name, rows in split.items():
            path = out_dir / f"images_{name}.npy"
            expected = (int(rows.sum()), *brick.shape[1:])
            if not (path.is_file() and np.load(path, mmap_mode="r").shape == expected):
                _copy_images(brick, images[rows], path, image_chunk, progress)
        image_size = list(brick.shape[1:3])
    finally:
        fh.close()

    # 6. captions
    for name, rows in split.items():
        atomic_write_json(out_dir / f"captions_{name}.json", gather_captions(root, images[rows].tolist(), protocol))

    # 7. meta last
    meta = {
        "subject": int(subject), "plan": plan, "sessions": sessions, "protocol": protocol.name,
        "captions": {"source": protocol.caption_source, "selection": protocol.caption_selection},
        "trials_per_session": trials_per_session,
        "n_voxels": len(voxel_ijk), "image_size": image_size, "units": "NSD betas (percent signal change x 300)",
        "nsd_ids_train": images[split["train"]].tolist(), "nsd_ids_test": images[split["test"]].tolist(),
        "repetitions_train": counts[split["train"]].tolist(), "repetitions_test": counts[split["test"]].tolist(),
    }
    atomic_write_json(meta_path, meta)
    shutil.rmtree(partial, ignore_errors=True)
    notes = _write_ncsnr(ncsnr, root, subject, out_dir)  # 8. optional
    return PrepareResult(out_dir, int(split["train"].sum()), int(split["test"].sum()), len(voxel_ijk),
                         tuple(sessions), resumed, notes)


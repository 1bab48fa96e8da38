"""Write the demo tier's simulated subjects as an NSD-shaped folder (the NSD layout), read by the real NSD code path.

Layout of the simulated experiment (NSD's, scaled down):

* NSD ids ``0 .. n_test - 1`` are the shared test images; subject ``k`` (in ``SUBJECTS`` order) owns the training
  ids ``n_test + k * n_train .. n_test + (k + 1) * n_train - 1``. NSD id ``i`` is scene ``i`` of the world seed.
* ``subjectim`` (8 x 10000, 1-based ids): columns ``0 .. n_test - 1`` hold the shared images, columns
  ``1000 .. 1000 + n_train - 1`` the subject's own; the unused columns repeat the subject's images (valid ids that
  no trial uses). Subjects not simulated (3, 4, 6, 8) copy subject 1's row and have no betas.
* ``masterordering``: every used position ``n_reps`` times, in one seeded random order shared by all subjects;
  ``masterordering <= 1000`` marks the test trials, as in NSD. Trial ``t`` is in session ``t // T + 1``.
* Betas: int16 percent signal change x 300 in the anatomy grid, simulated for nsdgeneral voxels, 0 elsewhere.
* Extra (not in NSD): ``braindiff_simulation/`` holds the ground truth: ``simulation.json`` (parameters,
  noise ceilings) and ``subjXX_voxels.npz`` (each voxel's pRF, kind and noise level).

Every random draw is seeded by ``(seed, subject, session)``, so an interrupted build resumes by skipping the
session files already written and still produces identical data.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from braindiff_app.atomic import atomic_path, atomic_save_npz, atomic_write_json
from braindiff_app.data import nsd_layout
from braindiff_app.demo.anatomy import load_anatomy
from braindiff_app.demo.simulate import (
    ENCODING_MODEL_VERSION,
    FEATURE_SIZE,
    KIND_NAMES,
    VoxelModel,
    eccentricity_rois,
    load_voxel_model,
    make_voxel_model,
    noise_ceiling,
    simulate_trials,
    stimulus_features,
    voxel_drive,
)
from braindiff_app.demo.stimuli import check_image_size, make_scene, make_scenes, render_scene, scene_captions

__all__ = ["SUBJECTS", "simulation_dir", "choose_trials_per_session", "build_simulated_nsd", "true_responses"]

SUBJECTS = (1, 2, 5, 7)
N_SHARED_SLOTS = 1000  # NSD: positions 1..1000 of a subject's list are the shared images
N_SLOTS = 10000


def simulation_dir(root: str | os.PathLike) -> Path:
    """Ground-truth folder of a simulated NSD (absent from a real NSD copy)."""
    return Path(root) / "braindiff_simulation"


def choose_trials_per_session(n_trials: int, max_per_session: int = 750) -> int:
    """The largest number of trials per session <= ``max_per_session`` that divides ``n_trials`` evenly."""
    for t in range(min(max_per_session, n_trials), 0, -1):
        if n_trials % t == 0:
            return t
    raise ValueError(f"n_trials: expected a positive number of trials, got {n_trials}.")


def _check_sizes(n_test: int, n_train: int, n_reps: int, trials_per_session: int | None) -> int:
    if not 1 <= n_test <= N_SHARED_SLOTS:
        raise ValueError(f"n_test: expected 1..{N_SHARED_SLOTS} shared images, got {n_test}.")
    if not 1 <= n_train <= N_SLOTS - N_SHARED_SLOTS:
        raise ValueError(f"n_train: expected 1..{N_SLOTS - N_SHARED_SLOTS} training images, got {n_train}.")
    if n_reps < 2:
        raise ValueError(f"n_reps: expected at least 2 repetitions (the noise ceiling needs them), got {n_reps}.")
    n_trials = n_reps * (n_test + n_train)
    if trials_per_session is None:
        return choose_trials_per_session(n_trials)
    if trials_per_session < 1 or n_trials % trials_per_session:
        raise ValueError(f"trials_per_session: expected a divisor of the {n_trials} trials "
                         f"({n_reps} x ({n_test} + {n_train})), got {trials_per_session}; "
                         f"e.g. {choose_trials_per_session(n_trials)}.")
    return int(trials_per_session)


def _design(seed: int, n_test: int, n_train: int, n_reps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """masterordering (1-based positions), subjectim (8 x 10000, 1-based ids), sharedix (1-based ids)."""
    positions = np.concatenate([np.arange(1, n_test + 1), N_SHARED_SLOTS + np.arange(1, n_train + 1)])
    rng = np.random.default_rng([int(seed), 0xD5])
    masterordering = rng.permutation(np.repeat(positions, n_reps))
    subjectim = np.zeros((nsd_layout.N_SUBJECTS, N_SLOTS), np.int64)
    for k, subject in enumerate(SUBJECTS):
        own = np.concatenate([np.arange(n_test), n_test + k * n_train + np.arange(n_train)]) + 1
        row = np.resize(own, N_SLOTS)  # unused slots: repeats of valid ids
        row[:n_test] = own[:n_test]
        row[N_SHARED_SLOTS:N_SHARED_SLOTS + n_train] = own[n_test:]
        subjectim[subject - 1] = row
    for subject in range(1, nsd_layout.N_SUBJECTS + 1):
        if subject not in SUBJECTS:
            subjectim[subject - 1] = subjectim[SUBJECTS[0] - 1]
    return masterordering, subjectim, np.arange(1, n_test + 1)


def _features(seed: int, ids: np.ndarray):
    """What the simulated brain sees of NSD ids ``ids`` (rendered at the features' resolution, with labels)."""
    images = np.zeros((len(ids), FEATURE_SIZE, FEATURE_SIZE, 3), np.uint8)
    labels = np.zeros((len(ids), FEATURE_SIZE, FEATURE_SIZE), np.uint8)
    for j, i in enumerate(ids):
        images[j], labels[j] = render_scene(make_scene(seed, int(i)), FEATURE_SIZE, labels=True)
    return stimulus_features(images, labels)


def build_simulated_nsd(out: str | os.PathLike, seed: int = 0, n_test: int = 100, n_train: int = 1500,
                        n_reps: int = 3, trials_per_session: int | None = None, image_size: int = 128,
                        subjects: tuple[int, ...] = SUBJECTS, anatomy_dir: str | os.PathLike | None = None,
                        progress: bool = False) -> dict:
    """Simulate subjects and write them as an NSD-shaped folder.

    Parameters
    ----------
    out : path
        NSD root to write (created; an interrupted build in it resumes).
    seed : int, default 0
        Seed of the stimulus world, the design, and (with the subject number) each subject's voxels and noise.
    n_test : int, default 100
        Shared test images (seen by every subject).
    n_train : int, default 1500
        Training images per subject (each subject its own).
    n_reps : int, default 3
        Repetitions of every image.
    trials_per_session : int, optional
        Trials per beta file; default: the largest divisor of the trial count up to 750.
    image_size : int, default 128
        Side of the images in the stimuli HDF5, pixels.
    subjects : tuple of int, default (1, 2, 5, 7)
        Which of ``SUBJECTS`` to simulate.
    anatomy_dir : path, optional
        Demo anatomy folder (default ``assets/demo/anatomy``).
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    dict
        What ``simulation.json`` holds: parameters, voxel counts and noise ceilings per ROI and subject.
    """
    from tqdm.auto import tqdm

    bad = sorted(set(subjects) - set(SUBJECTS))
    if bad or not subjects:
        raise ValueError(f"subjects: expected a non-empty subset of {SUBJECTS}, got {tuple(subjects)}.")
    per_session = _check_sizes(n_test, n_train, n_reps, trials_per_session)
    check_image_size(image_size, "image_size")  # before parameters.json records it (a corrected rerun was refused)
    root = Path(out)
    truth_dir = simulation_dir(root)
    params = {"seed": int(seed), "n_test": int(n_test), "n_train": int(n_train), "n_reps": int(n_reps),
              "trials_per_session": per_session, "image_size": int(image_size),
              "encoding_model": ENCODING_MODEL_VERSION}
    _check_resume(truth_dir / "parameters.json", params)
    anatomy = load_anatomy(anatomy_dir)
    masterordering, subjectim, sharedix = _design(seed, n_test, n_train, n_reps)
    n_sessions = len(masterordering) // per_session
    bar = tqdm(total=2 + len(subjects) * (1 + n_sessions), desc="simulate NSD", disable=not progress)

    # 1. Design, stimuli, captions.
    nsd_layout.write_expdesign(root, masterordering, subjectim, sharedix)
    n_images = n_test + len(SUBJECTS) * n_train
    if not nsd_layout.stimuli_path(root).exists():
        scenes = make_scenes(n_images, seed)
        _write_stimuli_gzip(root, scenes, image_size)
        ids = np.arange(n_images)
        coco_ids = ids + 1
        splits = np.where(ids < n_test, "val2017", "train2017")
        nsd_layout.write_stim_info(root, ids, coco_ids, splits)
        for split in nsd_layout.COCO_SPLITS:
            nsd_layout.write_captions(root, split, {int(c): scene_captions(s) for c, s, sp
                                                    in zip(coco_ids, scenes, splits, strict=True) if sp == split})
    bar.update(2)

    # 2. Subjects.
    reference = _features(seed, np.arange(n_test))
    summary = {**params, "subjects": {}, "n_sessions": n_sessions, "n_trials": len(masterordering)}
    for subject in subjects:
        model = make_voxel_model(anatomy, reference, seed=_subject_seed(seed, subject))
        _write_rois(root, subject, anatomy, model)
        own = subjectim[subject - 1]
        positions = masterordering - 1  # 0-based slot per trial
        slot_ids = own - 1  # 0-based NSD id per slot
        used = np.unique(positions)
        slot_to_row = np.full(N_SLOTS, -1)
        slot_to_row[used] = np.arange(len(used))
        drive = voxel_drive(model, _features(seed, slot_ids[used]))  # (n_used, n_voxels)
        bar.update(1)
        test_betas = np.zeros((n_test, n_reps, model.n_voxels), np.float32)
        seen = np.zeros(n_test, np.int64)
        for session in range(1, n_sessions + 1):
            trials = positions[(session - 1) * per_session: session * per_session]
            rng = np.random.default_rng([int(seed), int(subject), session, 0xBE7A])
            betas = simulate_trials(model, drive[slot_to_row[trials]], rng)
            for trial, slot in enumerate(trials):
                if slot < n_test:
                    test_betas[slot, seen[slot]] = betas[trial]
                    seen[slot] += 1
            path = nsd_layout.betas_path(root, subject, session)
            if not path.exists():
                volume = np.zeros((*anatomy.shape, per_session), np.int16)
                volume[tuple(model.ijk.T)] = np.clip(np.rint(betas * 300), -32768, 32767).astype(np.int16).T
                nsd_layout.write_betas(root, subject, session, volume, anatomy.affine)
            bar.update(1)
        summary["subjects"][str(subject)] = _subject_summary(model, test_betas, drive[:n_test])
        _save_truth(truth_dir / f"subj{subject:02d}_voxels.npz", model)
    bar.close()
    atomic_write_json(truth_dir / "simulation.json", summary)
    return summary


def _write_stimuli_gzip(root: Path, scenes: list, image_size: int, chunk: int = 256) -> Path:
    """Render ``scenes`` straight into ``nsd_stimuli.hdf5`` (``imgBrick``), gzip-compressed per image.

    Adapter beside :func:`nsd_layout.write_stimuli`, which writes uncompressed (like NSD): the demo's flat-coloured
    scenes shrink about 35-fold with gzip (292 MB -> about 8 MB at the default size), and h5py reads them back
    transparently. Images are rendered chunk by chunk, never all held in memory.
    """
    import h5py

    path = nsd_layout.stimuli_path(root)
    shape = (len(scenes), image_size, image_size, 3)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        ds = fh.create_dataset("imgBrick", shape=shape, dtype=np.uint8, chunks=(1, *shape[1:]),
                               compression="gzip", compression_opts=4)
        for start in range(0, len(scenes), chunk):
            block = scenes[start:start + chunk]
            ds[start:start + len(block)] = np.stack([render_scene(scene, image_size) for scene in block])
    return path


def _subject_seed(seed: int, subject: int) -> int:
    return int(np.random.default_rng([int(seed), int(subject), 0x5B]).integers(2**31))


def _check_resume(path: Path, params: dict) -> None:
    if path.exists():
        old = json.loads(path.read_text())
        if old != params:
            raise ValueError(f"{path}: this folder holds a simulation with other parameters {old}; "
                             f"choose a new --out folder or delete this one (asked for {params}).")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, params)


def _write_rois(root: Path, subject: int, anatomy, model: VoxelModel) -> None:
    nsdgeneral = np.where(anatomy.brain, 0, -1).astype(np.int16)
    nsdgeneral[anatomy.nsdgeneral] = 1
    nsd_layout.write_roi(root, subject, "nsdgeneral", nsdgeneral, anatomy.affine)
    for name, volume in anatomy.rois.items():
        nsd_layout.write_roi(root, subject, name, volume, anatomy.affine)
    ecc = np.zeros(anatomy.shape, np.int16)
    ecc[tuple(model.ijk.T)] = eccentricity_rois(model)
    nsd_layout.write_roi(root, subject, "prf-eccrois", ecc, anatomy.affine)


def _subject_summary(model: VoxelModel, test_betas: np.ndarray, test_drive: np.ndarray) -> dict:
    """Voxel counts and median noise ceilings (measured from the test trials, and the model's truth) per kind."""
    ncsnr, nc = noise_ceiling(test_betas)
    true_ncsnr = test_drive.std(axis=0) / model.noise_sd
    out = {"n_voxels": int(model.n_voxels), "median_nc": float(np.median(nc)),
           "median_ncsnr": float(np.median(ncsnr)), "kinds": {}}
    for k, name in enumerate(KIND_NAMES):
        sel = model.kind == k
        if sel.any():
            out["kinds"][name] = {"n_voxels": int(sel.sum()), "median_nc": float(np.median(nc[sel])),
                                  "median_ncsnr": float(np.median(ncsnr[sel])),
                                  "median_true_ncsnr": float(np.median(true_ncsnr[sel]))}
    eccroi = eccentricity_rois(model)
    out["eccrois"] = {label: int((eccroi == v).sum())
                      for v, label in nsd_layout.ROI_LABELS["prf-eccrois"].items()}
    return out


def _save_truth(path: Path, model: VoxelModel) -> None:
    atomic_save_npz(path, asdict(model))


def true_responses(root: str | os.PathLike, subject: int, nsd_ids, voxel_ijk: np.ndarray | None = None,
                   seed: int | None = None) -> np.ndarray:
    """The simulated subject's true noiseless responses to NSD ids (the encoder's ceiling on the demo tier).

    Parameters
    ----------
    root : path
        A simulated NSD folder (with ``braindiff_simulation/``).
    subject : int
    nsd_ids : sequence of int
        Images (scenes of the world seed).
    voxel_ijk : array of shape (n_voxels, 3), optional
        The prepared subject's voxel order; default the simulator's own.
    seed : int, optional
        World seed; default the simulation's.

    Returns
    -------
    array of shape (n_images, n_voxels), float32
        Percent signal change around the baseline, ``gain * drive``.
    """
    truth = simulation_dir(root)
    path = truth / f"subj{int(subject):02d}_voxels.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no simulated ground truth; run `braindiff demo simulate` first.")
    model = load_voxel_model(path)
    if seed is None:
        seed = int(json.loads((truth / "parameters.json").read_text())["seed"])
    drive = voxel_drive(model, _features(seed, np.asarray(nsd_ids, dtype=np.int64)))
    if voxel_ijk is None:
        return drive
    order = {tuple(v): i for i, v in enumerate(model.ijk.tolist())}
    try:
        index = np.array([order[tuple(v)] for v in np.asarray(voxel_ijk).tolist()])
    except KeyError:
        raise ValueError(f"voxel_ijk: voxels outside subject {subject}'s simulated mask.") from None
    return drive[:, index]

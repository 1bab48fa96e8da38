"""A tiny NSD-shaped folder written with the real formats (``nsd_layout``'s writers), for the NSD reader's tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braindiff_app.data import nsd_layout as L


@dataclass
class TinyNSD:
    root: object
    subject: int
    mask: np.ndarray  # (x, y, z) bool
    betas: dict  # session -> int16 (x, y, z, T)
    trial_ids: np.ndarray  # 0-based NSD id of each trial
    shared_ids: set
    images: np.ndarray  # imgBrick
    captions: dict  # nsd id -> list of str


def make_nsd(root, subject=1, shape=(5, 4, 3), n_sessions=3, T=10, n_shared=4, n_per_subject=12,
              n_images=80, size=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n_images)[: n_shared + L.N_SUBJECTS * (n_per_subject - n_shared)]
    sharedix = ids[:n_shared] + 1
    own = ids[n_shared:].reshape(L.N_SUBJECTS, -1) + 1
    subjectim = np.concatenate([np.tile(sharedix, (L.N_SUBJECTS, 1)), own], axis=1)
    masterordering = rng.integers(1, n_per_subject + 1, n_sessions * T + 7)  # more trials than sessions hold
    masterordering[:n_per_subject] = np.arange(1, n_per_subject + 1)  # every image seen at least once
    L.write_expdesign(root, masterordering, subjectim, sharedix)
    general = rng.choice([-1, 0, 1], size=shape, p=[0.3, 0.3, 0.4]).astype(np.int16)
    general.flat[0] = 1
    L.write_roi(root, subject, "nsdgeneral", general)
    betas = {}
    for s in range(1, n_sessions + 1):
        betas[s] = rng.integers(-3000, 3000, (*shape, T), dtype=np.int16)
        L.write_betas(root, subject, s, betas[s])
    images = rng.integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
    L.write_stimuli(root, images, chunk=7)
    coco = 1000 + np.arange(n_images)
    splits = ["val2017" if i % 3 == 0 else "train2017" for i in range(n_images)]
    L.write_stim_info(root, np.arange(n_images), coco, splits)
    captions = {i: [f"image {i} caption {k}" for k in range(6)] for i in range(n_images)}
    for split in L.COCO_SPLITS:
        L.write_captions(root, split, {int(coco[i]): captions[i] for i in range(n_images) if splits[i] == split})
    trial_ids = subjectim[subject - 1, masterordering - 1] - 1
    return TinyNSD(root, subject, general == 1, betas, trial_ids, set((sharedix - 1).tolist()), images, captions)

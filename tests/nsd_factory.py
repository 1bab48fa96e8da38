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
    ncsnr: np.ndarray | None = None  # (x, y, z) float32, the ncsnr.nii.gz written (None: no file)


def make_nsd(root, subject=1, shape=(5, 4, 3), n_sessions=3, T=10, n_shared=4, n_per_subject=12,
              n_images=80, size=6, seed=0, ncsnr=True):
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
    volume = rng.uniform(0.05, 1.5, shape).astype(np.float32) if ncsnr else None  # drawn last: the rest unchanged
    if ncsnr:
        L.write_ncsnr(root, subject, volume)
    return TinyNSD(root, subject, general == 1, betas, trial_ids, set((sharedix - 1).tolist()), images, captions,
                   volume)


@dataclass
class TinyAnatomy:
    root: object
    subject: int
    shape: tuple  # func1pt8mm grid (x, y, z)
    vertex_ijk: dict  # hemi -> int (n_vertices, 3) voxel of each vertex, -1 rows where it has no position
    in_patch: dict  # hemi -> bool (n_vertices,)
    faces: dict  # hemi -> int (n_triangles, 3)
    nsdgeneral: np.ndarray  # (x, y, z) bool


def _sheet(nu, nv):
    """Triangles of a nu x nv vertex grid (vertex a * nv + b), two per quad."""
    a, b = np.meshgrid(np.arange(nu - 1), np.arange(nv - 1), indexing="ij")
    v00 = (a * nv + b).ravel()
    v10, v01, v11 = v00 + nv, v00 + 1, v00 + nv + 1
    return np.concatenate([np.stack([v00, v10, v11], 1), np.stack([v00, v11, v01], 1)])


def make_nsd_anatomy(root, subject=1, shape=(20, 9, 6), nu=30, nv=20, spacing=0.5):
    """A folded cortical sheet per hemisphere in a func1pt8mm grid, with NSD's FreeSurfer and transform files.

    Each hemisphere is a nu x nv vertex sheet (``spacing`` mm apart on the flatmap) laid along x (left in
    i = 0.6..8.7, right in i = 10.4..18.5), along y over j = 1..6.3 and folded in z. Its ROI volumes: nsdgeneral
    = voxels with j <= 5 (-1 at the grid's far corner), V1 (prf-visualrois 1-2) = left voxels with i in 1..3, V2
    (3-4) = left i in 5..6, faces (floc-faces 2) = right i in 12..14, places (floc-places 1) = right i in 16..17;
    region labels only inside nsdgeneral. The left patch leaves out the sheet's first column; the right
    hemisphere's last row has no position in the transform (9999).
    """
    u = np.repeat(np.arange(nu) * spacing, nv)  # flat mm along the sheet
    v = np.tile(np.arange(nv) * spacing, nu)
    faces = _sheet(nu, nv)
    out = TinyAnatomy(root, subject, shape, {}, {}, {}, np.zeros(shape, bool))
    for hemi, i0 in (("lh", 0.6), ("rh", 10.4)):
        pos = np.stack([i0 + u / 1.8, 1.0 + v / 1.8, 2.5 + 1.5 * np.sin(u / u.max() * 2 * np.pi)], axis=1)
        L.write_surface(root, subject, hemi, "white", pos * 1.8, faces)
        L.write_curv(root, subject, hemi, np.cos(u / u.max() * 2 * np.pi))
        in_patch = np.ones(len(u), bool)
        if hemi == "lh":
            in_patch[:nv] = False
        keep = np.flatnonzero(in_patch)
        border = (u[keep] == u[keep].min()) | (u[keep] == u.max()) | (v[keep] == 0) | (v[keep] == v.max())
        # FreeSurfer patch axes: pycortex reads flat = (y, -x), so x = -v, y = u puts u along the flatmap's x.
        L.write_patch(root, subject, hemi, keep, np.stack([-v[keep], u[keep], 0 * u[keep]], 1), border)
        transform = pos + 1.0  # 1-based
        ijk = np.rint(pos).astype(int)
        if hemi == "rh":
            transform[v == v.max()] = 9999
            ijk[v == v.max()] = -1
        L.write_surface_transform(root, subject, hemi, transform)
        out.vertex_ijk[hemi], out.in_patch[hemi], out.faces[hemi] = ijk, in_patch, faces
    i, j, _ = np.indices(shape)
    general = np.where(j <= 5, 1, 0).astype(np.int16)
    general[-1, -1, -1] = -1
    out.nsdgeneral = general == 1
    L.write_roi(root, subject, "nsdgeneral", general)
    inside = out.nsdgeneral
    visual = np.zeros(shape, np.int16)
    visual[inside & (i >= 1) & (i <= 3) & (j <= 2)] = 1  # V1v
    visual[inside & (i >= 1) & (i <= 3) & (j > 2)] = 2  # V1d
    visual[inside & (i >= 5) & (i <= 6)] = 3  # V2v
    L.write_roi(root, subject, "prf-visualrois", visual)
    L.write_roi(root, subject, "floc-faces", np.where(inside & (i >= 12) & (i <= 14), 2, 0))
    L.write_roi(root, subject, "floc-places", np.where(inside & (i >= 16) & (i <= 17), 1, 0))
    return out

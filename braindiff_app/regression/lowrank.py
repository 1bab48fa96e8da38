"""Low-rank regressors: ``weights ~ left @ right`` (rank r), smaller on disk and faster to apply.

A dense CLIP-vision regressor is n_voxels x 197376 float32 (12.4 GB for 15724 voxels); at rank r it is
``r * (n_voxels + n_targets)`` floats. The factors come from a randomized range finder with power iterations
(Halko, Martinsson & Tropp 2011) on the weights, read in target batches so a memory-mapped matrix is never
loaded whole. :func:`low_rank_fidelity` measures what the truncation costs in predictions.
"""

from __future__ import annotations

import copy

import numpy as np

from braindiff_app.regression.ridge import LowRankWeights, RidgeRegressor, _batches

__all__ = ["low_rank_weights", "to_low_rank", "low_rank_fidelity"]


def _orthonormal(a: np.ndarray) -> np.ndarray:
    return np.linalg.qr(a)[0]


def check_rank(rank: int, n_voxels: int, n_targets: int, name: str = "rank", targets: str = "targets") -> None:
    """ValueError unless ``1 <= rank <= min(n_voxels, n_targets)`` (a low-rank factorisation's possible ranks);
    ``targets`` names the other dimension in the message (an encoder's are its features)."""
    if not 1 <= rank <= min(n_voxels, n_targets):
        raise ValueError(f"{name}: expected 1 <= rank <= {min(n_voxels, n_targets)} (the smaller of {n_voxels} "
                         f"voxels and {n_targets} {targets}), got {rank}.")


def low_rank_weights(W: np.ndarray, rank: int, *, n_oversamples: int = 10, n_power_iter: int = 2, seed: int = 0,
                     n_targets_batch: int | None = 65536) -> LowRankWeights:
    """The best rank-``rank`` approximation ``left @ right`` of a weight matrix, by randomized SVD.

    Minimizes ``||W - L R||_F`` over rank-``rank`` products (approximately: randomized, with power iterations).

    Parameters
    ----------
    W : array of shape (n_inputs, n_targets)
        Dense weights (may be memory-mapped; read ``n_targets_batch`` columns at a time).
    rank : int
        Kept rank, 1 <= rank <= min(n_inputs, n_targets).
    n_oversamples : int, default 10
        Extra random directions for accuracy.
    n_power_iter : int, default 2
        Power iterations (more: closer to the exact truncated SVD when singular values decay slowly).
    seed : int, default 0
        Seed of the random test matrix.
    n_targets_batch : int or None, default 65536
        Weight columns read at a time.

    Returns
    -------
    LowRankWeights
        ``left`` (n_inputs, rank) orthonormal, ``right`` (rank, n_targets), float32.
    """
    if isinstance(W, LowRankWeights):
        raise ValueError("W: already low-rank; pass the dense weight matrix.")
    p, m = W.shape
    check_rank(rank, p, m)
    k = min(rank + n_oversamples, p, m)
    batches = _batches(m, n_targets_batch, 1)
    rng = np.random.default_rng(seed)
    Q = np.zeros((p, k), dtype=np.float32)
    for sl in batches:  # Q = W @ Omega, Omega (n_targets, k) drawn batch by batch
        Q += W[:, sl] @ rng.standard_normal((sl.stop - sl.start, k), dtype=np.float32)
    for _ in range(n_power_iter):  # Q <- orth(W W^T Q)
        Q = _orthonormal(Q)
        Z = np.zeros((p, k), dtype=np.float32)
        for sl in batches:
            w = np.asarray(W[:, sl], dtype=np.float32)
            Z += w @ (w.T @ Q)
        Q = Z
    Q = _orthonormal(Q)
    B = np.empty((k, m), dtype=np.float32)  # B = Q^T W
    for sl in batches:
        B[:, sl] = Q.T @ W[:, sl]
    _, U = np.linalg.eigh((B @ B.T).astype(np.float64))  # left singular vectors of B, ascending
    top = U[:, ::-1][:, :rank].astype(np.float32)
    return LowRankWeights(left=Q @ top, right=top.T @ B)


def to_low_rank(reg: RidgeRegressor, rank: int, **options) -> RidgeRegressor:
    """A copy of ``reg`` whose weights are :func:`low_rank_weights` of its dense weights.

    Parameters
    ----------
    reg : RidgeRegressor
        Fitted, dense weights of shape (n_voxels, n_targets) (may be memory-mapped).
    rank : int
        Kept rank, 1 <= rank <= min(n_voxels, n_targets).
    **options
        ``n_oversamples``, ``n_power_iter``, ``seed``, ``n_targets_batch`` of :func:`low_rank_weights`.

    Returns
    -------
    RidgeRegressor
        Same preprocessing and statistics, weights a :class:`LowRankWeights` with ``left`` orthonormal.
    """
    out = copy.copy(reg)
    out.weights_ = low_rank_weights(reg.weights_, rank, **options)
    return out


def low_rank_fidelity(dense: RidgeRegressor, low: RidgeRegressor, fmri: np.ndarray) -> dict[str, float]:
    """How closely a low-rank regressor's raw predictions follow the dense one's.

    Parameters
    ----------
    dense, low : RidgeRegressor
        The same regressor, dense and low-rank.
    fmri : array of shape (n_trials, n_voxels)
        Betas to predict from (held-out trials, NSD file units).

    Returns
    -------
    dict
        ``relative_error``: ||P_low - P|| / ||P - mean(P)|| over all predictions (centered per target);
        ``mean_correlation``: Pearson r between the two predictions of each target across trials, averaged.
    """
    P, L = dense.predict(fmri).reshape(len(fmri), -1), low.predict(fmri).reshape(len(fmri), -1)
    Pc, Lc = P - P.mean(0), L - L.mean(0)
    denom = np.linalg.norm(Pc, axis=0) * np.linalg.norm(Lc, axis=0)
    r = (Pc * Lc).sum(0) / np.where(denom > 0, denom, 1)
    return {"relative_error": float(np.linalg.norm(L - P) / np.linalg.norm(Pc)),
            "mean_correlation": float(r.mean())}

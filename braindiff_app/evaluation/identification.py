"""Feature-space comparisons: 2-way identification and correlation distance.

2-way identification (AlexNet(2), AlexNet(5), Inception, CLIP): with r[i, j] the Pearson correlation between
ground-truth image i's features and reconstruction j's features, reconstruction j scores the fraction of the
n - 1 other ground-truth images i it is less correlated with than with its own: mean over i != j of
``r[i, j] < r[j, j]``. Chance is 0.5; the paper reports the mean over trials as a percentage. n-way
identification (``CLIP 4-way``: the classroom quiz's odds) asks instead that reconstruction j beat all of
``ways - 1`` random distractors, in exact expectation over the draws.

Correlation distance (EffNet-B, SwAV): ``1 - r[j, j]`` (scipy's ``distance.correlation``); lower is better.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["pearson_matrix", "n_way_identification", "two_way_identification", "correlation_distance"]


def _as_rows(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim < 2 or features.shape[0] < 1:
        raise ValueError(f"{name}: expected an array of shape (n_images, n_features, ...), got {features.shape}.")
    return features.reshape(len(features), -1)


def _row_stats(x: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Row means and centred norms in float64, reading ``chunk`` feature columns at a time."""
    n, d = x.shape
    total = np.zeros(n)
    for start in range(0, d, chunk):
        total += x[:, start:start + chunk].sum(axis=1, dtype=np.float64)
    mean = total / d
    sq = np.zeros(n)
    for start in range(0, d, chunk):
        block = x[:, start:start + chunk].astype(np.float64) - mean[:, None]
        sq += (block * block).sum(axis=1)
    return mean, np.sqrt(sq)


def pearson_matrix(a: np.ndarray, b: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Pearson correlation between every row of ``a`` and every row of ``b``, accumulated in float64.

    Parameters
    ----------
    a : array of shape (n_a, n_features, ...)
        Flattened to (n_a, n_features_total).
    b : array of shape (n_b, n_features, ...)
        Same number of features per row as ``a``.
    chunk : int, default 8192
        Feature columns processed at once (bounds the float64 working memory to about
        (n_a + n_b) * chunk * 8 bytes).

    Returns
    -------
    array of shape (n_a, n_b), float64
        ``r[i, j]`` = corr(a[i], b[j]); NaN where a row is constant.
    """
    a, b = _as_rows(a, "a"), _as_rows(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"b: expected {a.shape[1]} features per row (as in a), got {b.shape[1]}.")
    mean_a, norm_a = _row_stats(a, chunk)
    mean_b, norm_b = _row_stats(b, chunk)
    dot = np.zeros((len(a), len(b)))
    for start in range(0, a.shape[1], chunk):
        block_a = a[:, start:start + chunk].astype(np.float64) - mean_a[:, None]
        block_b = b[:, start:start + chunk].astype(np.float64) - mean_b[:, None]
        dot += block_a @ block_b.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return dot / np.outer(norm_a, norm_b)


def _paired_rows(ground_truth_features, reconstruction_features) -> tuple[np.ndarray, np.ndarray]:
    """Both feature arrays as (n_images, n_features) rows, checked to have the same shape."""
    gt = _as_rows(ground_truth_features, "ground_truth_features")
    rec = _as_rows(reconstruction_features, "reconstruction_features")
    if gt.shape != rec.shape:
        raise ValueError(f"reconstruction_features: expected shape {gt.shape} (as the ground truth's), "
                         f"got {rec.shape}.")
    return gt, rec


def n_way_identification(ground_truth_features: np.ndarray, reconstruction_features: np.ndarray,
                         ways: int = 2) -> np.ndarray:
    """Per-trial n-way identification: the chance that a reconstruction picks its own image among ``ways``.

    The reconstruction of trial j is shown its seen image and ``ways - 1`` distractors drawn at random, without
    replacement, from the other trials' seen images; it "picks" the one whose features correlate best with its own.
    The value is the exact expectation over every draw of distractors: with ``b_j`` the number of the n - 1 other
    images that correlate less with reconstruction j than its own image does, ``C(b_j, ways - 1) / C(n - 1, ways - 1)``.
    With ``ways = 2`` this is the paper's 2-way identification, ``b_j / (n - 1)``; ``ways = 4`` gives the odds of the
    app's four-choice classroom quiz. A tie counts as a loss.

    Parameters
    ----------
    ground_truth_features : array of shape (n_images, n_features, ...)
        Features of the seen images.
    reconstruction_features : array of shape (n_images, n_features, ...)
        Features of the reconstructions, in the same trial order.
    ways : int, default 2
        Images to choose from (the seen one included); needs ``2 <= ways <= n_images``.

    Returns
    -------
    array of shape (n_images,), float32 in [0, 1]
        Chance is ``1 / ways``.
    """
    gt, rec = _paired_rows(ground_truth_features, reconstruction_features)
    n = len(gt)
    if isinstance(ways, bool) or not isinstance(ways, int | np.integer) or ways < 2:
        raise ValueError(f"ways: expected an integer >= 2, got {ways!r}.")
    if n < ways:
        raise ValueError(f"ground_truth_features: {ways}-way identification needs at least {ways} trials, got {n}.")
    r = pearson_matrix(gt, rec)  # (n gt, n rec)
    own = np.diag(r)
    beaten = (r < own[None, :]).sum(axis=0)  # the diagonal never counts (r < r is False)
    k = int(ways) - 1
    return (_choose(beaten, k) / math.comb(n - 1, k)).astype(np.float32)


def _choose(n: np.ndarray, k: int) -> np.ndarray:
    """Binomial coefficients ``C(n_i, k)`` (0 where n_i < k), as float64."""
    return np.array([math.comb(int(v), k) for v in n], dtype=np.float64)


def two_way_identification(ground_truth_features: np.ndarray, reconstruction_features: np.ndarray) -> np.ndarray:
    """Per-trial 2-way identification: fraction of the n - 1 distractors each reconstruction beats.

    Parameters
    ----------
    ground_truth_features : array of shape (n_images, n_features, ...)
        Features of the seen images.
    reconstruction_features : array of shape (n_images, n_features, ...)
        Features of the reconstructions, in the same trial order.

    Returns
    -------
    array of shape (n_images,), float32 in [0, 1]
        ``mean over i != j of corr(gt_i, rec_j) < corr(gt_j, rec_j)`` (:func:`n_way_identification` with
        ``ways = 2``). Needs n_images >= 2.
    """
    return n_way_identification(ground_truth_features, reconstruction_features, ways=2)


def correlation_distance(ground_truth_features: np.ndarray, reconstruction_features: np.ndarray) -> np.ndarray:
    """Per-trial correlation distance ``1 - corr(gt_j, rec_j)`` between paired feature vectors.

    Parameters
    ----------
    ground_truth_features : array of shape (n_images, n_features, ...)
    reconstruction_features : array of shape (n_images, n_features, ...)

    Returns
    -------
    array of shape (n_images,), float32 in [0, 2]
    """
    gt, rec = _paired_rows(ground_truth_features, reconstruction_features)
    r = np.array([pearson_matrix(g[None], p[None])[0, 0] for g, p in zip(gt, rec, strict=True)])
    return (1.0 - r).astype(np.float32)

"""Ridge regression from fMRI to features: one factorization shared by every target.

Objective, for each target column ``y`` (``X`` centered, intercept unpenalized)::

    w = argmin_w ||y - X w||^2 + alpha ||w||^2  =  X^T (X X^T + alpha I)^{-1} y  =  M y

``M`` (n_voxels, n_trials) depends on ``X`` and ``alpha`` only, so it is computed once (float32 Gram matrix and
products, float64 Cholesky inverse of the small system) and every target costs one float32 matrix product
``M @ Y[:, chunk]``: the reference's 257 CLIP-vision and 77 CLIP-text per-token fits become column blocks of one
solve (ridge is separable over targets, so the weights are the same). scikit-learn's ``Ridge`` (we use it as
the reference in tests and benchmarks) solves ``(X X^T + alpha I) c = Y`` for all targets and then forms ``X^T c``:
``(n_trials + n_voxels) / n_voxels`` times our per-target work, on the CPU only, with the whole ``Y`` in memory,
and a per-token loop repeats its factorization 257 + 77 times (``bench/ridge.py`` measures both).

With ``alphas`` (several), each target gets the alpha of least leave-one-out error, computed in closed form from
one eigendecomposition of the kernel (the generalized cross-validation of scikit-learn's ``RidgeCV`` with
``alpha_per_target=True``).

Preprocessing (paper and reference code): ``fmri / 300``, then z-score each voxel with the training mean and
standard deviation (ddof=1); both are kept in the fitted :class:`RidgeRegressor`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from braindiff_app.config import check_in_allowed
from braindiff_app.regression._backend import get_backend

__all__ = [
    "FMRI_DIVISOR",
    "RESCALE_MODES",
    "RidgeFit",
    "LowRankWeights",
    "zscore_stats",
    "preprocess_fmri",
    "fit_ridge",
    "predict_linear",
    "rescale_predictions",
    "RidgeRegressor",
]

FMRI_DIVISOR = 300.0
RESCALE_MODES = ("none", "transductive", "train", "norm")


# --------------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------------
def zscore_stats(fmri: np.ndarray, divisor: float = FMRI_DIVISOR) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel mean and standard deviation (ddof=1) of ``fmri / divisor``.

    Parameters
    ----------
    fmri : array of shape (n_trials, n_voxels)
        Training betas in NSD file units (percent signal change x 300).
    divisor : float, default 300
        The paper's scaling.

    Returns
    -------
    mean, scale : arrays of shape (n_voxels,), float64
        A voxel with zero variance gets scale 1 (with a warning) so it contributes zeros instead of NaN.
    """
    scaled = np.asarray(fmri, dtype=np.float64) / divisor
    mean = scaled.mean(axis=0)
    scale = scaled.std(axis=0, ddof=1)
    constant = np.ptp(np.asarray(fmri), axis=0) == 0
    if constant.any():
        warnings.warn(f"fmri: {int(constant.sum())} voxel(s) have zero variance in the training rows; they are "
                      "given scale 1 and contribute nothing.", RuntimeWarning, stacklevel=2)
        scale[constant] = 1.0
    return mean, scale


def preprocess_fmri(fmri: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                    divisor: float = FMRI_DIVISOR) -> np.ndarray:
    """``(fmri / divisor - mean) / scale`` as float32, array of shape (n_trials, n_voxels)."""
    fmri = np.asarray(fmri)
    if fmri.ndim != 2 or fmri.shape[1] != mean.shape[0]:
        raise ValueError(f"fmri: expected shape (n_trials, {mean.shape[0]}) (n_voxels of the training data), "
                         f"got {fmri.shape}.")
    return ((fmri / divisor - mean) / scale).astype(np.float32)


# --------------------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LowRankWeights:
    """Weights stored as a product ``left @ right``.

    Attributes
    ----------
    left : array of shape (n_voxels, rank), float32
    right : array of shape (rank, n_targets), float32
    """

    left: np.ndarray
    right: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.left.shape[0], self.right.shape[1])

    @property
    def rank(self) -> int:
        return self.left.shape[1]


@dataclass(frozen=True)
class RidgeFit:
    """What :func:`fit_ridge` returns.

    Attributes
    ----------
    weights : array of shape (n_voxels, n_targets), float32
    intercept : array of shape (n_targets,), float32
    alpha : array of shape (n_targets,), float64
        The alpha used for each target (all equal without cross-validation).
    pred_mean, pred_std : arrays of shape (n_targets,), float32
        Mean and standard deviation (ddof=0) of the predictions for the statistics rows (``X_stats``).
    pred_norm : array of shape (n_targets // group_size,), float32
        Mean over the statistics rows of each group's prediction norm.
    """

    weights: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray
    pred_mean: np.ndarray
    pred_std: np.ndarray
    pred_norm: np.ndarray


def _batches(n_targets: int, n_targets_batch: int | None, group_size: int) -> list[slice]:
    size = n_targets if n_targets_batch is None else max(int(n_targets_batch), 1)
    size = max(group_size, size - size % group_size)  # whole groups per batch
    return [slice(s, min(s + size, n_targets)) for s in range(0, n_targets, size)]


def _projection(xp, Xc, alpha: float):
    """``M = X^T (X X^T + alpha I)^{-1}`` (n_voxels, n_trials), float32, from the centered ``Xc``.

    The Gram matrix and ``M`` are float32 products; only the small (min(n, p) square) inverse is float64,
    through its Cholesky factor. This costs about ``2 n^2 p`` float32 plus ``n^3`` float64 operations, instead of
    the ``n^2 p`` float64 Gram plus ``2 n^2 p`` float64 triangular solves of ``solve(K, X)``.
    """
    n, p = Xc.shape
    Xc = xp.asarray(Xc, "float32")
    kernel = n <= p  # kernel form: (n, n) system; else primal form: (p, p)
    gram = Xc @ xp.transpose(Xc) if kernel else xp.transpose(Xc) @ Xc
    gram = xp.add_diagonal(xp.asarray(gram, "float64"), alpha)
    inverse = xp.asarray(xp.inv_spd(gram), "float32")
    return xp.transpose(Xc) @ inverse if kernel else inverse @ xp.transpose(Xc)


class _LooSolver:
    """Per-target alpha by closed-form leave-one-out error, from one eigendecomposition of the kernel.

    The constant vector is made an eigenvector of the kernel (``K + 1 1^T``) and its direction left unpenalized,
    which accounts for refitting the intercept in each left-out fit.
    """

    def __init__(self, xp, Xc, alphas: np.ndarray) -> None:
        n = Xc.shape[0]
        K = Xc @ xp.transpose(Xc) + 1.0
        s, U = xp.eigh(K)
        s = xp.to_numpy(s)
        ones = np.full(n, 1.0 / np.sqrt(n))
        intercept_dim = int(np.argmax(np.abs(ones @ xp.to_numpy(U))))
        w = 1.0 / (s[None, :] + alphas[:, None])  # (n_alphas, n)
        w[:, intercept_dim] = 0.0
        self.xp, self.U, self.Xc, self.alphas = xp, U, Xc, alphas
        self.w = xp.asarray(w, "float64")
        self.g_diag = (U * U) @ xp.transpose(self.w)  # (n, n_alphas): diagonal of (K + alpha I)^{-1}

    def __call__(self, Yc):
        xp = self.xp
        qty = xp.transpose(self.U) @ xp.asarray(Yc, "float64")  # (n_trials, batch)
        errors = np.empty((len(self.alphas), qty.shape[1]))
        for a in range(len(self.alphas)):
            c = self.U @ (qty * self.w[a][:, None])  # dual coefficients (n_trials, batch)
            errors[a] = xp.to_numpy(((c / self.g_diag[:, a:a + 1]) ** 2).mean(0))  # leave-one-out errors
        best = errors.argmin(axis=0)
        c = self.U @ (qty * xp.take_columns(xp.transpose(self.w), best))  # per-target alpha
        return xp.asarray(xp.transpose(self.Xc) @ c, "float32"), self.alphas[best]


def fit_ridge(X: np.ndarray, Y: np.ndarray, alpha: float | Sequence[float], *, X_stats: np.ndarray | None = None,
              group_size: int = 1, n_targets_batch: int | None = None, backend: str = "numpy",
              device: Any = None, progress: bool = False, out: np.ndarray | None = None) -> RidgeFit:
    """Fit ridge from ``X`` to every column of ``Y`` with one shared factorization.

    Minimizes ``||Y - X W - 1 b^T||^2 + alpha ||W||^2`` (intercept ``b`` unpenalized), independently per target.

    Parameters
    ----------
    X : array of shape (n_trials, n_voxels)
        Preprocessed fMRI (see :func:`preprocess_fmri`).
    Y : array of shape (n_trials, n_targets)
        Targets; may be a memory-mapped array (read one batch at a time).
    alpha : float or sequence of float
        One regularization strength for all targets, or candidates: each target then takes the one with the
        least leave-one-out squared error.
    X_stats : array of shape (n_stats, n_voxels), optional
        Rows whose predictions give ``pred_mean``, ``pred_std`` and ``pred_norm`` (default: ``X`` itself).
    group_size : int, default 1
        Targets per group for ``pred_norm`` (e.g. 768 for per-token CLIP targets); batches hold whole groups.
    n_targets_batch : int, optional
        Targets solved per batch (bounds memory); None solves all at once.
    backend : str in {"numpy", "torch"}, default "numpy"
    device : str or torch.device, optional
        Device of the torch backend (e.g. "cuda").
    progress : bool, default False
        Show a tqdm progress bar over the target batches.
    out : array of shape (n_voxels, n_targets), float32, optional
        Where to write the weights, e.g. a ``numpy.memmap`` so that weights larger than memory never sit in RAM
        (default: a new in-memory array).

    Returns
    -------
    RidgeFit
    """
    xp = get_backend(backend, device)
    X = np.asarray(X)
    n, m = Y.shape[0], int(np.prod(Y.shape[1:]))
    if X.ndim != 2 or X.shape[0] != n:
        raise ValueError(f"X: expected shape (n_trials={n}, n_voxels) matching Y's rows, got {X.shape}.")
    if m % group_size:
        raise ValueError(f"group_size: must divide n_targets={m}, got {group_size}.")
    Y = Y.reshape(n, m)
    alphas = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
    if alphas.ndim != 1 or not np.all(alphas > 0):
        raise ValueError(f"alpha: expected positive value(s), got {alpha!r}.")

    x_mean = X.mean(axis=0, dtype=np.float64)
    x_mean_b = xp.asarray(x_mean[None], "float32")  # (1, n_voxels)
    Xc = xp.asarray(X - x_mean, "float64" if len(alphas) > 1 else "float32")  # (n_trials, n_voxels)
    Xs = xp.asarray(X if X_stats is None else X_stats, "float32")  # (n_stats, n_voxels)
    if len(alphas) == 1:
        M = _projection(xp, Xc, float(alphas[0]))  # (n_voxels, n_trials)
        T = Xs @ M  # (n_stats, n_trials): statistics rows' predictions cost n_trials, not n_voxels, per target
        del Xc

        def solve(Yc):
            Yc = xp.asarray(Yc, "float32")
            return M @ Yc, T @ Yc, np.full(Yc.shape[1], alphas[0])
    else:
        loo = _LooSolver(xp, Xc, alphas)

        def solve(Yc):
            w, best = loo(Yc)
            return w, Xs @ w, best

    if out is not None and (out.shape != (X.shape[1], m) or out.dtype != np.float32):
        raise ValueError(f"out: expected a float32 array of shape {(X.shape[1], m)}, got {out.dtype} {out.shape}.")
    weights = np.empty((X.shape[1], m), dtype=np.float32) if out is None else out
    stats = {k: np.empty(m, dtype=np.float32) for k in ("intercept", "pred_mean", "pred_std")}
    alpha_out = np.empty(m, dtype=np.float64)
    pred_norm = np.empty(m // group_size, dtype=np.float32)
    batches = _batches(m, n_targets_batch, group_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="ridge targets", unit="batch")
    for sl in batches:
        y = np.array(Y[:, sl], dtype=np.float32 if len(alphas) == 1 else np.float64)  # copy (n_trials, batch)
        y_mean = y.mean(axis=0, dtype=np.float64)
        y -= y_mean.astype(y.dtype)
        w, pred_no_bias, alpha_out[sl] = solve(y)
        del y
        weights[:, sl] = xp.to_numpy(w)
        b = (y_mean - xp.to_numpy(x_mean_b @ w)[0]).astype(np.float32)
        pred = xp.to_numpy(pred_no_bias) + b  # (n_stats, batch): X_stats @ w + b
        stats["intercept"][sl] = b
        stats["pred_mean"][sl] = pred.mean(axis=0)
        stats["pred_std"][sl] = pred.std(axis=0)
        groups = pred.reshape(pred.shape[0], -1, group_size)
        pred_norm[sl.start // group_size: sl.stop // group_size] = np.linalg.norm(groups, axis=2).mean(axis=0)
    xp.free()
    return RidgeFit(weights, stats["intercept"], alpha_out, stats["pred_mean"], stats["pred_std"], pred_norm)


# --------------------------------------------------------------------------------------------------------
# Predicting
# --------------------------------------------------------------------------------------------------------
def predict_linear(X: np.ndarray, weights: np.ndarray | LowRankWeights, intercept: np.ndarray, *,
                   n_targets_batch: int | None = None, backend: str = "numpy", device: Any = None) -> np.ndarray:
    """``X @ weights + intercept`` in target batches (weights may be memory-mapped or low-rank).

    Parameters
    ----------
    X : array of shape (n_trials, n_voxels), float32
    weights : array of shape (n_voxels, n_targets) or LowRankWeights
    intercept : array of shape (n_targets,)

    Returns
    -------
    array of shape (n_trials, n_targets), float32
    """
    xp = get_backend(backend, device)
    m = weights.shape[1]
    if isinstance(weights, LowRankWeights):
        Xw = xp.asarray(X, "float32") @ xp.asarray(weights.left, "float32")  # (n_trials, rank)
        right = weights.right
    else:
        Xw, right = xp.asarray(X, "float32"), weights
    out = np.empty((X.shape[0], m), dtype=np.float32)
    for sl in _batches(m, n_targets_batch, 1):
        out[:, sl] = xp.to_numpy(Xw @ xp.asarray(right[:, sl], "float32"))
    xp.free()
    out += intercept
    return out


def rescale_predictions(pred: np.ndarray, mode: str, *, target_mean: np.ndarray, target_std: np.ndarray,
                        pred_mean: np.ndarray, pred_std: np.ndarray, pred_norm: np.ndarray) -> np.ndarray:
    """Bring raw predictions to the scale of the training features.

    Parameters
    ----------
    pred : array of shape (n_trials, n_targets)
        Raw predictions.
    mode : str in {"none", "transductive", "train", "norm"}
        - ``"none"``: unchanged.
        - ``"transductive"`` (reference code): z-score each target across the given rows, then map to the
          training features' mean and standard deviation. Needs at least 2 rows; results depend on which rows
          are predicted together.
        - ``"train"``: the same, with the mean and standard deviation of the training predictions instead of the
          given rows' (each row rescaled on its own).
        - ``"norm"``: for single synthetic patterns (ROI): scale each group (token, or the whole vector) of each
          row to the mean norm of that group's training predictions.
    target_mean, target_std : arrays of shape (n_targets,)
        Training features' statistics.
    pred_mean, pred_std : arrays of shape (n_targets,)
        Training predictions' statistics.
    pred_norm : array of shape (n_groups,)
        Mean norm of each group of the training predictions (n_targets = n_groups x group size).

    Returns
    -------
    array of shape (n_trials, n_targets), float32
    """
    check_in_allowed(mode, RESCALE_MODES, "rescale")
    pred = np.asarray(pred, dtype=np.float32)
    if mode == "none":
        return pred
    if mode == "norm":
        groups = pred.reshape(pred.shape[0], len(pred_norm), -1)
        norms = np.linalg.norm(groups, axis=2, keepdims=True)
        return (groups * (pred_norm[None, :, None] / np.where(norms > 0, norms, 1))).reshape(pred.shape)
    if mode == "transductive":
        if pred.shape[0] < 2:
            raise ValueError(f"rescale='transductive': needs at least 2 rows to standardize across, got "
                             f"{pred.shape[0]}; use rescale='train' or 'norm' for single patterns.")
        mean, std = pred.mean(axis=0), pred.std(axis=0)
    else:
        mean, std = pred_mean, pred_std
    return ((pred - mean) / np.where(std > 0, std, 1) * target_std + target_mean).astype(np.float32)


# --------------------------------------------------------------------------------------------------------
# Fitted state
# --------------------------------------------------------------------------------------------------------
class RidgeRegressor:
    """Ridge from fMRI to features of any shape, keeping its preprocessing and rescaling statistics.

    Parameters
    ----------
    alpha : float or sequence of float
        Regularization (paper: VDVAE 50000, CLIP-vision 60000, CLIP-text 100000). A sequence selects one per
        target by leave-one-out error.
    n_targets_batch : int, optional
        Targets per batch when fitting and predicting (bounds memory); None: all at once.
    backend : str in {"numpy", "torch"}, default "numpy"
    device : str or torch.device, optional
        Device of the torch backend.
    n_stats_rows : int or None, default 1024
        Training rows (evenly spaced) whose predictions give the "train" and "norm" statistics (costs about
        ``n_stats_rows / n_trials`` extra fitting work: 12% for NSD's 8859 trials); None uses every training row
        (exact, twice the fitting work).
    progress : bool, default False
        tqdm progress bar while fitting.

    Attributes (after fit or load)
    ------------------------------
    fmri_mean_, fmri_scale_ : arrays of shape (n_voxels,)
        Preprocessing: ``(fmri / 300 - fmri_mean_) / fmri_scale_``.
    weights_ : array of shape (n_voxels, n_targets) or LowRankWeights
    intercept_, target_mean_, target_std_, pred_mean_, pred_std_ : arrays of shape (n_targets,)
    pred_norm_ : array of shape (n_groups,)
    alpha_ : array of shape (n_targets,)
    target_shape_ : tuple of int
    """

    def __init__(self, alpha: float | Sequence[float] = 1.0, *, n_targets_batch: int | None = None,
                 backend: str = "numpy", device: Any = None, n_stats_rows: int | None = 1024,
                 progress: bool = False) -> None:
        self.alpha = alpha
        self.n_targets_batch = n_targets_batch
        self.backend = backend
        self.device = device
        self.n_stats_rows = n_stats_rows
        self.progress = progress

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "weights_")

    def fit(self, fmri: np.ndarray, targets: np.ndarray, weights_out: np.ndarray | None = None) -> RidgeRegressor:
        """Fit on training betas and features.

        Parameters
        ----------
        fmri : array of shape (n_trials, n_voxels)
            Betas in NSD file units (the /300 and z-score are applied here).
        targets : array of shape (n_trials, *target_shape)
            Features; may be memory-mapped (read one batch at a time).
        weights_out : array of shape (n_voxels, n_targets), float32, optional
            Destination of the weights (e.g. a ``numpy.memmap``), see :func:`fit_ridge`'s ``out``.
        """
        fmri = np.asarray(fmri)
        if fmri.ndim != 2:
            raise ValueError(f"fmri: expected shape (n_trials, n_voxels), got {fmri.shape}.")
        if targets.ndim < 2 or targets.shape[0] != fmri.shape[0]:
            raise ValueError(f"targets: expected shape (n_trials={fmri.shape[0]}, ...), got {targets.shape}.")
        self.fmri_mean_, self.fmri_scale_ = zscore_stats(fmri)
        X = preprocess_fmri(fmri, self.fmri_mean_, self.fmri_scale_)
        n = X.shape[0]
        X_stats = None
        if self.n_stats_rows is not None and self.n_stats_rows < n:
            X_stats = X[np.linspace(0, n - 1, self.n_stats_rows).round().astype(int)]
        target_shape = tuple(targets.shape[1:])
        result = fit_ridge(X, targets, self.alpha, X_stats=X_stats, group_size=target_shape[-1],
                           n_targets_batch=self.n_targets_batch, backend=self.backend, device=self.device,
                           progress=self.progress, out=weights_out)
        self.target_mean_, self.target_std_ = _column_stats(targets.reshape(n, -1), self.n_targets_batch)
        self.target_shape_ = target_shape
        self.weights_, self.intercept_, self.alpha_ = result.weights, result.intercept, result.alpha
        self.pred_mean_, self.pred_std_, self.pred_norm_ = result.pred_mean, result.pred_std, result.pred_norm
        return self

    @property
    def typical_deviation(self) -> float:
        """Typical size of a training image's deviation from the mean features.

        The norm of the training features' per-target standard deviations, ``sqrt(sum(target_std_ ** 2))``
        (float64): the root-mean-square distance of a training target vector from the mean target vector, in
        feature units. ROI patterns bring a pattern's effect to this size (``roi.predict_pattern_features``).
        """
        if not self.is_fitted:
            raise ValueError("RidgeRegressor: not fitted; call fit() or load_regressor() first.")
        return float(np.sqrt(np.sum(np.asarray(self.target_std_, dtype=np.float64) ** 2)))

    def predict(self, fmri: np.ndarray, rescale: str = "none") -> np.ndarray:
        """Predict features from betas.

        Parameters
        ----------
        fmri : array of shape (n_trials, n_voxels) or (n_voxels,)
            Betas in NSD file units (a 1-D pattern is one row).
        rescale : str in {"none", "transductive", "train", "norm"}, default "none"
            See :func:`rescale_predictions`.

        Returns
        -------
        array of shape (n_trials, *target_shape), float32
        """
        if not self.is_fitted:
            raise ValueError("RidgeRegressor: not fitted; call fit() or load_regressor() first.")
        fmri = np.asarray(fmri)
        if fmri.ndim == 1:
            fmri = fmri[None]
        return self.predict_standardized(preprocess_fmri(fmri, self.fmri_mean_, self.fmri_scale_), rescale)

    def predict_standardized(self, X: np.ndarray, rescale: str = "none") -> np.ndarray:
        """Predict features from patterns already in the regressor's input space (preprocessed, z-scored voxels).

        Synthetic patterns (ROI indicators: 1 on chosen voxels, 0 for the mean response) are made in this space;
        :meth:`predict` is ``predict_standardized(preprocess_fmri(fmri, fmri_mean_, fmri_scale_))``. An all-zero
        row predicts ``intercept_`` (with ``rescale="none"``).

        Parameters
        ----------
        X : array of shape (n_trials, n_voxels) or (n_voxels,)
            Patterns in z-scored voxel units (a 1-D pattern is one row); cast to float32.
        rescale : str in {"none", "transductive", "train", "norm"}, default "none"
            See :func:`rescale_predictions`.

        Returns
        -------
        array of shape (n_trials, *target_shape), float32
        """
        if not self.is_fitted:
            raise ValueError("RidgeRegressor: not fitted; call fit() or load_regressor() first.")
        check_in_allowed(rescale, RESCALE_MODES, "rescale")
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None]
        n_voxels = self.weights_.shape[0]
        if X.ndim != 2 or X.shape[1] != n_voxels:
            raise ValueError(f"X: expected shape (n_trials, {n_voxels}) (n_voxels of the training data), got "
                             f"{X.shape}.")
        X = X.astype(np.float32, copy=False)
        pred = predict_linear(X, self.weights_, self.intercept_, n_targets_batch=self.n_targets_batch,
                              backend=self.backend, device=self.device)
        pred = rescale_predictions(pred, rescale, target_mean=self.target_mean_, target_std=self.target_std_,
                                   pred_mean=self.pred_mean_, pred_std=self.pred_std_, pred_norm=self.pred_norm_)
        return pred.reshape(len(pred), *self.target_shape_)


def _column_stats(Y: np.ndarray, n_targets_batch: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof=0) of each column, float32, reading ``Y`` in column batches."""
    mean = np.empty(Y.shape[1], dtype=np.float32)
    std = np.empty(Y.shape[1], dtype=np.float32)
    for sl in _batches(Y.shape[1], n_targets_batch, 1):
        y = np.asarray(Y[:, sl], dtype=np.float64)
        mean[sl], std[sl] = y.mean(axis=0), y.std(axis=0)
    return mean, std

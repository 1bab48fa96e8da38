"""Import the reference code's pickled regressors without running code from the file.

The reference (github.com/ozcelikfu/brain-diffuser) stores each regressor as a pickle of
``{'weight': array, 'bias': array}`` (scikit-learn ``coef_`` / ``intercept_``, float64): VDVAE
``weight`` (91168, n_voxels); CLIP per token ``weight`` (n_tokens, clip_dim, n_voxels) and ``bias``
(n_tokens, clip_dim). A pickle can name any callable to run while loading, so :func:`read_reference_pickle`
uses an unpickler that resolves only the few numpy names that rebuild a plain array, and refuses everything
else before it is called. The pickles hold no preprocessing statistics: :func:`import_reference_pickle` takes the
training betas (and features, for the rescaling statistics) and returns our :class:`RidgeRegressor`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from braindiff_app.regression.ridge import RidgeRegressor, predict_linear, preprocess_fmri, zscore_stats

__all__ = ["UnsafePickleError", "read_reference_pickle", "import_reference_pickle"]


class UnsafePickleError(ValueError):
    """A pickle asked for something other than a plain numpy array."""


def _allowed_globals() -> dict[tuple[str, str], object]:
    import codecs

    from numpy._core import multiarray, numeric

    # _codecs.encode turns a str into bytes: how protocols 0-2 carry an array's raw data.
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                              ("_codecs", "encode"): codecs.encode}
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Resolves only numpy's array-rebuilding names; any other global raises before it can run."""

    def __init__(self, fh, source: str) -> None:
        super().__init__(fh)
        self.source = source
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{self.source}: refuses to load {module}.{name}: only plain numpy arrays are "
                                    "accepted (the file may run code when unpickled).") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: persistent ids are not accepted.")


def read_reference_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a reference ``{'weight', 'bias'}`` pickle, allowing nothing but plain numeric numpy arrays.

    Parameters
    ----------
    path : path
        The reference's regressor pickle.

    Returns
    -------
    dict with keys "weight" and "bias", numeric arrays

    Raises
    ------
    UnsafePickleError
        The pickle references any other callable (nothing from it is run).
    ValueError
        Not a dict of exactly those two numeric arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such reference regressor pickle.")
    with open(path, "rb") as fh:
        try:
            obj = _ArrayOnlyUnpickler(fh, str(path)).load()
        except UnsafePickleError:
            raise
        except Exception as exc:  # malformed pickle stream
            raise ValueError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc}).") from None
    if not isinstance(obj, dict) or set(obj) != {"weight", "bias"}:
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: expected a dict with keys 'weight' and 'bias', got {got}.")
    for key, value in obj.items():
        if type(value) is not np.ndarray or value.dtype.kind not in "fiu":
            raise ValueError(f"{path}: {key!r} must be a numeric numpy array, got "
                             f"{getattr(value, 'dtype', type(value).__name__)}.")
    return obj


def import_reference_pickle(path: str | os.PathLike, train_fmri: np.ndarray,
                            train_targets: np.ndarray | None = None) -> RidgeRegressor:
    """Convert a reference regressor pickle into a :class:`RidgeRegressor` (save it with ``save_regressor``).

    Parameters
    ----------
    path : path
        ``{'weight': (*target_shape, n_voxels), 'bias': target_shape}`` pickle of the reference code.
    train_fmri : array of shape (n_trials, n_voxels)
        The training betas it was fitted on (NSD file units): gives the /300 + z-score statistics and the
        training predictions' statistics.
    train_targets : array of shape (n_trials, *target_shape), optional
        The training features: their mean/std are needed by the "transductive" and "train" rescale modes
        (without them those modes leave predictions standardized: mean 0, std 1).

    Returns
    -------
    RidgeRegressor
    """
    data = read_reference_pickle(path)
    weight, bias = data["weight"], data["bias"]
    train_fmri = np.asarray(train_fmri)
    n_voxels = weight.shape[-1]
    if train_fmri.ndim != 2 or train_fmri.shape[1] != n_voxels:
        raise ValueError(f"train_fmri: expected shape (n_trials, {n_voxels}) (the pickle's n_voxels), "
                         f"got {train_fmri.shape}.")
    target_shape = tuple(bias.shape)
    if weight.shape[:-1] != target_shape:
        raise ValueError(f"{path}: 'weight' shape {weight.shape} does not match 'bias' shape {bias.shape}.")
    m = int(np.prod(target_shape))
    reg = RidgeRegressor(alpha=np.nan)
    reg.fmri_mean_, reg.fmri_scale_ = zscore_stats(train_fmri)
    reg.weights_ = np.ascontiguousarray(weight.reshape(m, n_voxels).T, dtype=np.float32)
    reg.intercept_ = bias.reshape(m).astype(np.float32)
    reg.alpha_ = np.full(m, np.nan)
    reg.target_shape_ = target_shape
    pred = predict_linear(preprocess_fmri(train_fmri, reg.fmri_mean_, reg.fmri_scale_), reg.weights_,
                          reg.intercept_)
    reg.pred_mean_, reg.pred_std_ = pred.mean(0), pred.std(0)
    groups = pred.reshape(len(pred), -1, target_shape[-1])
    reg.pred_norm_ = np.linalg.norm(groups, axis=2).mean(0).astype(np.float32)
    if train_targets is None:
        reg.target_mean_, reg.target_std_ = np.zeros(m, np.float32), np.ones(m, np.float32)
    else:
        y = np.asarray(train_targets, dtype=np.float64).reshape(len(train_targets), m)
        reg.target_mean_, reg.target_std_ = y.mean(0).astype(np.float32), y.std(0).astype(np.float32)
    return reg

"""Encoding models: ridge from image features to every nsdgeneral voxel (the other direction of the regressors).

Objective, for each voxel ``v`` (features ``X`` z-scored with the training images' statistics, responses ``y_v``
the training betas ``/ 300`` z-scored per voxel as the regressors' inputs, intercept unpenalized)::

    w_v = argmin_w ||y_v - X w||^2 + alpha_v ||w||^2

solved by the project's ridge (:func:`~braindiff_app.regression.ridge.fit_ridge`: one factorization for every
voxel, ``alpha_v`` per voxel by closed-form leave-one-out error over a grid). The weight matrix
(n_features, n_voxels) is then truncated to rank ``rank`` (:func:`~braindiff_app.regression.lowrank.
low_rank_weights`): on the demo tier the rank-32 model predicts held-out responses better than the dense one
(reduced-rank regression shares strength across voxels) and is 1.6 MB instead of 160 MB (docs/encoding.md).

Features (:data:`FEATURE_SETS`) are built from the features ``braindiff extract`` writes:

- ``clip_cls``: CLIP-vision token 0 (clip_dim);
- ``clip_mean``: the mean of the patch tokens (clip_dim);
- ``clip_grid4``: token 0 plus the patch tokens averaged over a 4 x 4 grid (17 clip_dim: keeps where things are);
- ``vdvae``: the VDVAE latents (n_latent);
- ``clip_grid4+vdvae``: both (the default, chosen by held-out accuracy, see docs/encoding.md).

A fitted :class:`EncodingModel` is stored as safetensors (:func:`save_encoder`, written atomically) with its
held-out evaluation: per-voxel Pearson r on the test images; where the prepared subject has NSD's noise-ceiling
SNR (``ncsnr.npy``, see :func:`noise_ceiling`), r^2 as a fraction of the noise ceiling; and, when the caller
passes them (the demo tier's simulator knows them), r against the true noiseless responses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from braindiff_app._bundle_io import read_json
from braindiff_app.arrays import read_array
from braindiff_app.config import check_in_allowed
from braindiff_app.data.nsd import NCSNR_FILE
from braindiff_app.regression.lowrank import check_rank, low_rank_weights
from braindiff_app.regression.ridge import (
    FMRI_DIVISOR,
    LowRankWeights,
    fit_ridge,
    predict_linear,
    preprocess_fmri,
    zscore_stats,
)
from braindiff_app.regression.storage import check_file_format, read_safetensors, write_safetensors

__all__ = [
    "FEATURE_SETS",
    "DEFAULT_FEATURE_SET",
    "DEFAULT_ENCODER_ALPHAS",
    "DEFAULT_RANK",
    "ENCODER_FILE",
    "EncodingModel",
    "encoder_features",
    "pearson_per_voxel",
    "noise_ceiling",
    "NC_FLOOR",
    "fit_encoder",
    "save_encoder",
    "load_encoder",
    "fit_subject_encoder",
]

FEATURE_SETS = ("clip_cls", "clip_mean", "clip_grid4", "vdvae", "clip_grid4+vdvae")
DEFAULT_FEATURE_SET = "clip_grid4+vdvae"
#: Per-voxel alpha candidates (features are z-scored, so one grid serves every feature set).
DEFAULT_ENCODER_ALPHAS = tuple(float(a) for a in np.logspace(2, 6, 9))
DEFAULT_RANK = 32
ENCODER_FILE = "encoder.safetensors"
ENCODER_FORMAT = "braindiff-encoder"
ENCODER_VERSION = "1"
#: Optional per-voxel / per-image evaluation arrays kept in the file.
EVALUATION_KEYS = ("accuracy", "true_accuracy", "ceiling", "test_measured", "test_true", "test_nsd_ids",
                   "noise_ceiling", "normalized_accuracy")
#: Noise ceilings (percent of variance) below this leave a voxel's normalised accuracy out (NaN): r^2 / NC is
#: unstable and meaningless where the responses are almost all noise.
NC_FLOOR = 1.0
_GRID = 4


def _needs(feature_set: str) -> tuple[bool, bool]:
    """(needs CLIP-vision tokens, needs VDVAE latents)."""
    return feature_set != "vdvae", "vdvae" in feature_set


def _needed_input(values, name: str, shape: str, feature_set: str, what: str, extract: str) -> np.ndarray:
    """``values`` as float32 of the documented ``shape``; a clear error when a feature set needs them and they are
    missing or of another rank."""
    if values is None:
        raise ValueError(f"{name}: feature set {feature_set!r} needs {what} {shape}; extract them with "
                         f"`braindiff extract {extract}`.")
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != shape.count(",") + 1:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}.")
    return array


def encoder_features(feature_set: str, clip_vision: np.ndarray | None = None,
                     vdvae: np.ndarray | None = None) -> np.ndarray:
    """The encoder's input features of images.

    Parameters
    ----------
    feature_set : str in FEATURE_SETS
        See the module's notes.
    clip_vision : array of shape (n_images, n_tokens, clip_dim), optional
        CLIP-vision tokens (``extraction.extract_clip_features``'s); n_tokens = 1 + a square number of patches
        divisible into a 4 x 4 grid for the grid sets.
    vdvae : array of shape (n_images, n_latent), optional
        VDVAE latents (``extraction.extract_vdvae_features``'s).

    Returns
    -------
    array of shape (n_images, n_features), float32

    Raises
    ------
    ValueError
        An unknown set, a missing input it needs, inputs of other shapes or row counts, non-finite values.
    """
    check_in_allowed(feature_set, FEATURE_SETS, "feature_set")
    use_clip, use_vdvae = _needs(feature_set)
    parts = []
    if use_clip:
        tokens = _needed_input(clip_vision, "clip_vision", "(n_images, n_tokens, clip_dim)", feature_set,
                               "CLIP-vision tokens", "clip")
        if feature_set == "clip_mean":
            parts.append(tokens[:, 1:].mean(axis=1))
        else:
            parts.append(tokens[:, 0])
        if feature_set.startswith("clip_grid"):
            side = int(round(np.sqrt(tokens.shape[1] - 1)))
            if side * side != tokens.shape[1] - 1 or side % _GRID:
                raise ValueError(f"clip_vision: expected 1 + side^2 tokens with side divisible by {_GRID}, got "
                                 f"{tokens.shape[1]} tokens.")
            b = side // _GRID
            grid = tokens[:, 1:].reshape(len(tokens), _GRID, b, _GRID, b, -1).mean(axis=(2, 4))
            parts.append(grid.reshape(len(tokens), -1))
    if use_vdvae:
        parts.append(_needed_input(vdvae, "vdvae", "(n_images, n_latent)", feature_set, "VDVAE latents", "vdvae"))
    rows = {len(p) for p in parts}
    if len(rows) != 1:
        raise ValueError(f"clip_vision, vdvae: expected the same number of images, got {sorted(rows)}.")
    out = np.concatenate(parts, axis=1)
    if not np.isfinite(out).all():
        raise ValueError("features: hold NaN or infinite values; re-extract them.")
    return out


def pearson_per_voxel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``a`` with the same column of ``b`` (across rows, e.g. test images).

    Parameters
    ----------
    a, b : arrays of shape (n_images, n_voxels)

    Returns
    -------
    array of shape (n_voxels,), float64
        0 where a column is constant.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or len(a) < 2:
        raise ValueError(f"a, b: expected two arrays of one shape (n_images >= 2, n_voxels), got {a.shape} and "
                         f"{b.shape}.")
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    return np.where(denom > 0, (a * b).sum(axis=0) / np.where(denom > 0, denom, 1), 0.0)


def noise_ceiling(ncsnr: np.ndarray, repetitions: int | Sequence[int]) -> np.ndarray:
    """NSD's noise ceiling, percent of variance, of responses averaged over repetitions (NSD data manual).

    ``NC = 100 * ncsnr^2 / (ncsnr^2 + 1/n)`` for images all averaged over ``n`` trials; with A, B, C images of
    3, 2, 1 trials the manual's ``(A/3 + B/2 + C/1) / (A + B + C)`` replaces ``1/n``: the mean of ``1/n_i``.

    Parameters
    ----------
    ncsnr : array of shape (n_voxels,), float
        Each voxel's noise-ceiling SNR (``ncsnr.npy``), >= 0.
    repetitions : int or sequence of int of shape (n_images,)
        Trials averaged per test image (the prepared ``meta.json``'s ``repetitions_test``), each >= 1.

    Returns
    -------
    array of shape (n_voxels,), float64
        Percent (0 to 100).
    """
    ncsnr = np.asarray(ncsnr, dtype=np.float64)
    n = np.atleast_1d(np.asarray(repetitions, dtype=np.float64))
    if n.ndim != 1 or len(n) == 0 or np.any(n < 1):
        raise ValueError(f"repetitions: expected trial counts >= 1 per image, got {n.tolist()[:5]}.")
    if ncsnr.ndim != 1 or not np.all(np.isfinite(ncsnr)) or np.any(ncsnr < 0):
        raise ValueError(f"ncsnr: expected finite values >= 0 of shape (n_voxels,), got shape {ncsnr.shape}.")
    signal = ncsnr ** 2
    return 100 * signal / (signal + np.mean(1 / n))


@dataclass(frozen=True)
class EncodingModel:
    """A fitted encoder: image features -> every voxel's response in z-scored units.

    Attributes
    ----------
    feature_set : str in FEATURE_SETS
    feature_mean, feature_scale : arrays of shape (n_features,), float32
        Feature z-scoring of the training images.
    weights : array of shape (n_features, n_voxels) or LowRankWeights
    intercept : array of shape (n_voxels,), float32
    alpha : array of shape (n_voxels,), float64
        Each voxel's ridge alpha.
    fmri_mean, fmri_scale : arrays of shape (n_voxels,), float64
        The betas' z-scoring (``(fmri / 300 - fmri_mean) / fmri_scale``), the regressors' own.
    evaluation : dict of str to array
        Optional held-out evaluation (keys of ``EVALUATION_KEYS``): ``accuracy`` (n_voxels,) Pearson r on the
        test images; ``true_accuracy`` (n_voxels,) r against the true noiseless responses (demo tier);
        ``ceiling`` (n_voxels,) r of the measured test responses against the true ones; ``test_measured``
        (n_test, n_voxels) float16, the test betas z-scored; ``test_true`` (n_test, n_voxels) float16, the true
        responses z-scored per voxel over the test images (demo tier); ``test_nsd_ids`` (n_test,) int64;
        ``noise_ceiling`` (n_voxels,) NSD's NC in percent (:func:`noise_ceiling`) and ``normalized_accuracy``
        (n_voxels,) ``accuracy^2 / (noise_ceiling / 100)``, NaN where the NC is below ``NC_FLOOR`` (with an
        ``ncsnr.npy``). The predictions for the test images are not stored (the model re-makes them).
    metadata : dict of str to str
    """

    feature_set: str
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    weights: np.ndarray | LowRankWeights
    intercept: np.ndarray
    alpha: np.ndarray
    fmri_mean: np.ndarray
    fmri_scale: np.ndarray
    evaluation: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def n_voxels(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[0])

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted responses, z-scored per voxel (the regressors' input space).

        Parameters
        ----------
        features : array of shape (n_images, n_features)
            From :func:`encoder_features` with this model's ``feature_set``.

        Returns
        -------
        array of shape (n_images, n_voxels), float32
        """
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(f"features: expected shape (n_images, {self.n_features}) (feature set "
                             f"{self.feature_set!r}), got {features.shape}.")
        if not np.isfinite(features).all():
            raise ValueError("features: hold NaN or infinite values.")
        X = (features - self.feature_mean) / self.feature_scale
        return predict_linear(X.astype(np.float32), self.weights, self.intercept)

    def to_betas(self, responses: np.ndarray) -> np.ndarray:
        """z-scored responses (n_images, n_voxels) -> betas in NSD file units (percent signal change x 300)."""
        responses = np.asarray(responses, dtype=np.float64)
        return ((responses * self.fmri_scale + self.fmri_mean) * FMRI_DIVISOR).astype(np.float32)


def fit_encoder(features: np.ndarray, fmri: np.ndarray, *, feature_set: str = DEFAULT_FEATURE_SET,
                alphas: float | Sequence[float] = DEFAULT_ENCODER_ALPHAS, rank: int | None = DEFAULT_RANK,
                n_targets_batch: int | None = 2048) -> EncodingModel:
    """Fit ridge from image features to every voxel's z-scored response.

    Parameters
    ----------
    features : array of shape (n_images, n_features)
        Training images' features (:func:`encoder_features`).
    fmri : array of shape (n_images, n_voxels)
        Their betas in NSD file units (the prepared ``fmri_train.npy``).
    feature_set : str in FEATURE_SETS, default "clip_grid4+vdvae"
        Recorded with the model (which features :meth:`EncodingModel.predict` expects).
    alphas : float or sequence of float, default 1e2 ... 1e6 (9 values)
        One alpha, or candidates: each voxel takes the one of least leave-one-out error.
    rank : int or None, default 32
        Truncate the weights to this rank (None: keep them dense).
    n_targets_batch : int or None, default 2048
        Voxels solved at a time (bounds memory).

    Returns
    -------
    EncodingModel
        Without evaluation (see :func:`fit_subject_encoder`).
    """
    check_in_allowed(feature_set, FEATURE_SETS, "feature_set")
    features, fmri = np.asarray(features, dtype=np.float64), np.asarray(fmri)
    if features.ndim != 2 or fmri.ndim != 2 or len(features) != len(fmri):
        raise ValueError(f"features, fmri: expected shapes (n_images, n_features) and (n_images, n_voxels) with "
                         f"the same rows, got {features.shape} and {fmri.shape}.")
    if len(features) < 3:
        raise ValueError(f"features: need at least 3 training images, got {len(features)}.")
    if not (np.isfinite(features).all() and np.isfinite(fmri).all()):
        raise ValueError("features, fmri: hold NaN or infinite values; re-extract or re-prepare them.")
    if rank is not None:  # checked before the fit, not after it
        check_rank(int(rank), fmri.shape[1], features.shape[1], targets="features")
    feature_mean = features.mean(axis=0)
    feature_scale = features.std(axis=0)
    feature_scale[feature_scale == 0] = 1.0
    X = ((features - feature_mean) / feature_scale).astype(np.float32)
    fmri_mean, fmri_scale = zscore_stats(fmri)
    Y = preprocess_fmri(fmri, fmri_mean, fmri_scale)
    fit = fit_ridge(X, Y, alphas, n_targets_batch=n_targets_batch)
    weights: np.ndarray | LowRankWeights = fit.weights
    if rank is not None:
        weights = low_rank_weights(fit.weights, int(rank))
    return EncodingModel(feature_set=feature_set, feature_mean=feature_mean.astype(np.float32),
                         feature_scale=feature_scale.astype(np.float32), weights=weights, intercept=fit.intercept,
                         alpha=fit.alpha, fmri_mean=fmri_mean, fmri_scale=fmri_scale)


def save_encoder(model: EncodingModel, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write an encoder (and its evaluation) as a safetensors file, atomically.

    Parameters
    ----------
    model : EncodingModel
    path : path
        Destination ``.safetensors`` file.
    metadata : mapping of str to str, optional
        Extra provenance (subject, features used), stored in the header.
    """
    if not isinstance(model, EncodingModel):
        raise TypeError(f"model: expected an EncodingModel, got {type(model).__name__}.")
    tensors: dict[str, np.ndarray] = {
        "feature_mean": np.asarray(model.feature_mean, np.float32),
        "feature_scale": np.asarray(model.feature_scale, np.float32),
        "intercept": np.asarray(model.intercept, np.float32), "alpha": np.asarray(model.alpha, np.float64),
        "fmri_mean": np.asarray(model.fmri_mean, np.float64), "fmri_scale": np.asarray(model.fmri_scale, np.float64)}
    if isinstance(model.weights, LowRankWeights):
        tensors["weights_left"] = np.asarray(model.weights.left, np.float32)
        tensors["weights_right"] = np.asarray(model.weights.right, np.float32)
    else:
        tensors["weights"] = np.asarray(model.weights, np.float32)
    for key, values in model.evaluation.items():
        check_in_allowed(key, EVALUATION_KEYS, "evaluation")
        tensors[f"eval_{key}"] = np.asarray(values)
    meta = {**model.metadata, **dict(metadata or {}), "format": ENCODER_FORMAT, "version": ENCODER_VERSION,
            "feature_set": model.feature_set}
    write_safetensors(path, tensors, meta)


def load_encoder(path: str | os.PathLike) -> EncodingModel:
    """Read an encoder written by :func:`save_encoder`, checking every tensor's shape and values.

    Raises
    ------
    FileNotFoundError
        No such file (the message names ``braindiff fit-encoder``).
    ValueError
        Not an encoder file, another format version, a missing tensor, shapes that disagree, non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no encoder; fit it with `braindiff fit-encoder --subject S`.")
    tensors, metadata = read_safetensors(path)
    check_file_format(path, metadata, ENCODER_FORMAT, ENCODER_VERSION, "encoder",
                      "fit it with `braindiff fit-encoder --subject S`")
    feature_set = metadata.get("feature_set", "")
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"{path}: feature_set {feature_set!r} is not one of {FEATURE_SETS}; the file is damaged.")
    needed = ["feature_mean", "feature_scale", "intercept", "alpha", "fmri_mean", "fmri_scale"]
    needed += ["weights"] if "weights" in tensors else ["weights_left", "weights_right"]
    missing = [k for k in needed if k not in tensors]
    if missing:
        raise ValueError(f"{path}: missing tensor(s) {', '.join(missing)}; the file is damaged, refit it.")
    arrays = {k: np.array(tensors[k]) for k in needed}  # copies: small files, no open maps
    weights = (arrays["weights"] if "weights" in arrays
               else LowRankWeights(arrays["weights_left"], arrays["weights_right"]))
    n_features, n_voxels = weights.shape
    expected = {"feature_mean": (n_features,), "feature_scale": (n_features,), "intercept": (n_voxels,),
                "alpha": (n_voxels,), "fmri_mean": (n_voxels,), "fmri_scale": (n_voxels,)}
    if isinstance(weights, LowRankWeights) and weights.left.shape[1] != weights.right.shape[0]:
        raise ValueError(f"{path}: weights_left {weights.left.shape} and weights_right {weights.right.shape} do not "
                         "multiply; the file is damaged.")
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise ValueError(f"{path}: tensor {key}: expected shape {shape}, got {arrays[key].shape}; the file is "
                             "damaged, refit it.")
    for key, values in arrays.items():
        if not np.isfinite(values).all():
            raise ValueError(f"{path}: tensor {key} holds NaN or infinite values; the file is damaged, refit it.")
    if np.any(arrays["feature_scale"] <= 0) or np.any(arrays["fmri_scale"] <= 0):
        raise ValueError(f"{path}: a feature or voxel scale is zero or negative; the file is damaged, refit it.")
    evaluation = {k.removeprefix("eval_"): np.array(v) for k, v in tensors.items() if k.startswith("eval_")}
    for key, values in evaluation.items():
        fits = values.ndim >= 1 and (key == "test_nsd_ids" or values.shape[-1] == n_voxels)
        finite = np.isfinite(values.astype(np.float64))
        if key == "normalized_accuracy":  # NaN marks voxels below the noise-ceiling floor
            finite |= np.isnan(values)
        if key not in EVALUATION_KEYS or not fits or not finite.all():
            raise ValueError(f"{path}: evaluation tensor {key!r} of shape {values.shape} does not fit {n_voxels} "
                             "voxels or holds NaN; the file is damaged, refit it.")
    return EncodingModel(feature_set=feature_set, feature_mean=arrays["feature_mean"],
                         feature_scale=arrays["feature_scale"], weights=weights, intercept=arrays["intercept"],
                         alpha=arrays["alpha"], fmri_mean=arrays["fmri_mean"], fmri_scale=arrays["fmri_scale"],
                         evaluation=evaluation, metadata=dict(metadata))


def _features_of(features_dir: Path, split: str, feature_set: str) -> np.ndarray:
    use_clip, use_vdvae = _needs(feature_set)
    loaded: dict[str, Any] = {}
    for name, used, command in (("clip_vision", use_clip, "clip"), ("vdvae", use_vdvae, "vdvae")):
        path = features_dir / f"{name}_{split}.npy"
        if used:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; extract the features first (`braindiff extract "
                                        f"{command}`).")
            loaded[name] = read_array(path)  # encoder_features refuses NaN / inf itself
    return encoder_features(feature_set, loaded.get("clip_vision"), loaded.get("vdvae"))


def _normalized(prepared_dir: Path, meta: Mapping[str, Any], accuracy: np.ndarray) -> dict[str, np.ndarray]:
    """``noise_ceiling`` and ``normalized_accuracy`` (max(r, 0)^2 / (NC / 100), NaN below ``NC_FLOOR``) of the test
    set: a voxel predicted with a negative r explains none of its variance."""
    path = prepared_dir / NCSNR_FILE
    ncsnr = read_array(path, mmap=False)
    if ncsnr.shape != accuracy.shape or not np.isfinite(ncsnr).all() or np.any(ncsnr < 0):
        raise ValueError(f"{path}: expected finite values >= 0 of shape {accuracy.shape} (one per voxel), got "
                         f"shape {ncsnr.shape}; re-run `braindiff prepare`.")
    repetitions = meta.get("repetitions_test")
    if not repetitions:
        raise ValueError(f"{prepared_dir / 'meta.json'}: no repetitions_test (trials per test image), needed for "
                         "the noise ceiling; re-run `braindiff prepare`.")
    nc = noise_ceiling(ncsnr, repetitions)
    r2 = np.maximum(np.asarray(accuracy, dtype=np.float64), 0) ** 2
    normalized = np.where(nc >= NC_FLOOR, r2 / np.maximum(nc, NC_FLOOR) * 100, np.nan)
    return {"noise_ceiling": nc.astype(np.float32), "normalized_accuracy": normalized.astype(np.float32)}


def fit_subject_encoder(prepared_dir: str | os.PathLike, features_dir: str | os.PathLike,
                        out_path: str | os.PathLike, *, feature_set: str = DEFAULT_FEATURE_SET,
                        alphas: float | Sequence[float] = DEFAULT_ENCODER_ALPHAS, rank: int | None = DEFAULT_RANK,
                        true_test: np.ndarray | None = None, metadata: Mapping[str, str] | None = None,
                        ) -> dict[str, Any]:
    """Fit a prepared subject's encoder on its training images, evaluate it on its test images, save it.

    Parameters
    ----------
    prepared_dir : path
        Holds ``fmri_train.npy``, ``fmri_test.npy`` (betas averaged over repetitions) and ``meta.json``; with
        ``ncsnr.npy`` (NSD) the evaluation adds ``noise_ceiling`` and ``normalized_accuracy``.
    features_dir : path
        Holds ``clip_vision_{train,test}.npy`` and/or ``vdvae_{train,test}.npy``.
    out_path : path
        Destination ``.safetensors`` file (written atomically).
    feature_set, alphas, rank
        See :func:`fit_encoder`.
    true_test : array of shape (n_test, n_voxels), optional
        The true noiseless responses to the test images (the demo tier's simulator knows them; the caller passes
        them, this module never imports the demo tooling): adds ``true_accuracy``, ``ceiling`` and ``test_true``.
    metadata : mapping of str to str, optional

    Returns
    -------
    dict
        ``path``, ``feature_set``, ``n_features``, ``median_r`` (test images), ``median_normalized`` (median
        of ``normalized_accuracy`` over voxels, NaN ignored) with ``ncsnr.npy``, and ``median_true_r`` /
        ``median_ceiling`` with ``true_test``.
    """
    prepared_dir, features_dir = Path(prepared_dir), Path(features_dir)
    paths = {k: prepared_dir / f"fmri_{k}.npy" for k in ("train", "test")}
    for path in [*paths.values(), prepared_dir / "meta.json"]:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; prepare the subject first (`braindiff prepare`).")
    fmri = {k: read_array(p, finite=True, mmap=False) for k, p in paths.items()}
    X = {k: _features_of(features_dir, k, feature_set) for k in ("train", "test")}
    for k in X:
        if len(X[k]) != len(fmri[k]):
            raise ValueError(f"{features_dir}: {len(X[k])} {k} images' features, but {paths[k]} has "
                             f"{len(fmri[k])} rows; re-extract the features of this prepared subject.")
    model = fit_encoder(X["train"], fmri["train"], feature_set=feature_set, alphas=alphas, rank=rank)
    measured = preprocess_fmri(fmri["test"], model.fmri_mean, model.fmri_scale)
    predicted = model.predict(X["test"])
    evaluation = {"accuracy": pearson_per_voxel(predicted, measured).astype(np.float32),
                  "test_measured": measured.astype(np.float16)}
    meta = read_json(prepared_dir / "meta.json")
    if "nsd_ids_test" in meta:
        evaluation["test_nsd_ids"] = np.asarray(meta["nsd_ids_test"], dtype=np.int64)
    report: dict[str, Any] = {"path": str(out_path), "feature_set": feature_set, "n_features": model.n_features,
                              "median_r": float(np.median(evaluation["accuracy"]))}
    if (prepared_dir / NCSNR_FILE).is_file():
        evaluation.update(_normalized(prepared_dir, meta, evaluation["accuracy"]))
        report["median_normalized"] = float(np.nanmedian(evaluation["normalized_accuracy"])) \
            if np.isfinite(evaluation["normalized_accuracy"]).any() else float("nan")
    if true_test is not None:
        true_test = np.asarray(true_test)
        if true_test.shape != measured.shape:
            raise ValueError(f"true_test: expected shape {measured.shape} (n_test, n_voxels), got {true_test.shape}.")
        evaluation["true_accuracy"] = pearson_per_voxel(predicted, true_test).astype(np.float32)
        evaluation["ceiling"] = pearson_per_voxel(measured, true_test).astype(np.float32)
        spread = true_test.std(axis=0)
        evaluation["test_true"] = ((true_test - true_test.mean(axis=0)) / np.where(spread > 0, spread, 1)
                                   ).astype(np.float16)
        report["median_true_r"] = float(np.median(evaluation["true_accuracy"]))
        report["median_ceiling"] = float(np.median(evaluation["ceiling"]))
    model = replace(model, evaluation=evaluation)
    save_encoder(model, out_path, {"rank": "dense" if rank is None else str(rank),
                                   "n_train": str(len(fmri["train"])), **dict(metadata or {})})
    return report

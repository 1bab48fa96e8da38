"""Regression: ridge fit/predict, compact regressor storage, a subject's regressors in the workspace, importers,
and encoding models (image features -> voxels)."""

from braindiff_app.regression.encoder import (
    EncodingModel,
    encoder_features,
    fit_encoder,
    fit_subject_encoder,
    load_encoder,
    pearson_per_voxel,
    save_encoder,
)
from braindiff_app.regression.importers import UnsafePickleError, import_reference_pickle, read_reference_pickle
from braindiff_app.regression.lowrank import low_rank_fidelity, low_rank_weights, to_low_rank
from braindiff_app.regression.ridge import (
    FMRI_DIVISOR,
    RESCALE_MODES,
    LowRankWeights,
    RidgeFit,
    RidgeRegressor,
    fit_ridge,
    predict_linear,
    preprocess_fmri,
    rescale_predictions,
    zscore_stats,
)
from braindiff_app.regression.storage import load_regressor, read_safetensors, save_regressor, write_safetensors
from braindiff_app.regression.workspace import FEATURE_NAMES, load_regressors, subjects_with_regressors

__all__ = [
    # fitting and predicting
    "FMRI_DIVISOR",
    "RESCALE_MODES",
    "RidgeRegressor",
    "RidgeFit",
    "LowRankWeights",
    "fit_ridge",
    "predict_linear",
    "preprocess_fmri",
    "rescale_predictions",
    "zscore_stats",
    # storage
    "save_regressor",
    "load_regressor",
    "read_safetensors",
    "write_safetensors",
    "to_low_rank",
    "low_rank_weights",
    "low_rank_fidelity",
    # a subject's regressors in the workspace
    "FEATURE_NAMES",
    "load_regressors",
    "subjects_with_regressors",
    # encoding models
    "EncodingModel",
    "encoder_features",
    "fit_encoder",
    "fit_subject_encoder",
    "save_encoder",
    "load_encoder",
    "pearson_per_voxel",
    # importers
    "UnsafePickleError",
    "read_reference_pickle",
    "import_reference_pickle",
]

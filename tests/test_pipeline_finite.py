"""Issue 16: non-finite numbers never become a black image reported as success."""

from __future__ import annotations

import numpy as np
import pytest

from braindiff_app.regression import load_regressor, save_regressor
from tests._standins import fit_regressors, install_stand_ins, random_fmri, stand_in_pipeline


@pytest.fixture
def pipeline(monkeypatch):
    install_stand_ins(monkeypatch)
    return stand_in_pipeline(fit_regressors(0))


def _features(pipeline, n=2):
    return pipeline.predict_features(random_fmri(n), "train")


@pytest.mark.parametrize("name, value", [("vdvae", np.nan), ("clip_vision", np.inf), ("clip_text", -np.inf),
                                         ("vdvae", 1e308)])
def test_non_finite_features_are_refused_before_model_work(pipeline, name, value):
    features = {k: np.asarray(v, dtype=np.float64) for k, v in _features(pipeline).items()}
    features[name] = features[name].copy()
    features[name].flat[3] = value  # 1e308 overflows float32 to inf
    with pytest.raises(ValueError, match=rf"features\['{name}'\].*NaN or infinite"):
        pipeline(features=features, seeds=np.array([0, 1]), num_inference_steps=2)


@pytest.mark.parametrize("guidance_scale", [np.nan, np.inf, -np.inf])
def test_non_finite_guidance_scale_is_refused(pipeline, guidance_scale):
    with pytest.raises(ValueError, match="guidance_scale: expected a value >= 1"):
        pipeline(features=_features(pipeline), seeds=np.array([0, 1]), guidance_scale=guidance_scale)


def test_non_finite_fmri_and_overflowing_seeds_are_refused(pipeline):
    fmri = random_fmri(2)
    fmri[0, 0] = np.nan
    with pytest.raises(ValueError, match="fmri: expected finite numbers"):
        pipeline(fmri, seeds=np.array([0, 1]))
    with pytest.raises(ValueError, match="seeds: expected non-negative integers below 2\\*\\*63"):
        pipeline(features=_features(pipeline), seeds=np.array([0.5, 1.0]))


def test_an_all_black_stage_output_raises_instead_of_returning(pipeline, monkeypatch):
    monkeypatch.setattr(type(pipeline), "diffusion_stage",
                        lambda self, init, vision, text, seeds, **params: np.zeros((len(seeds), 16, 16, 3), np.uint8))
    with pytest.raises(RuntimeError, match=r"final stage: all-black image\(s\) for seed\(s\) \[4, 5\]"):
        pipeline(features=_features(pipeline), seeds=np.array([4, 5]))


@pytest.mark.parametrize("tensor, value, match", [
    ("weights_", np.nan, "tensor weights holds NaN"),
    ("intercept_", np.inf, "tensor intercept holds NaN or infinite"),
    ("fmri_mean_", np.nan, "tensor fmri_mean"),
    ("fmri_scale_", 0.0, "tensor fmri_scale has zero or negative entries"),
    ("fmri_scale_", np.inf, "tensor fmri_scale holds"),
    ("pred_norm_", np.nan, "tensor pred_norm"),
])
def test_damaged_regressor_files_are_refused_when_loaded(tmp_path, tensor, value, match):
    reg = fit_regressors(0)["vdvae"]
    values = np.array(getattr(reg, tensor), copy=True)
    values.flat[0] = value
    setattr(reg, tensor, values)
    path = tmp_path / "vdvae.safetensors"
    save_regressor(reg, path)
    with pytest.raises(ValueError, match=f"vdvae.safetensors: {match}"):
        load_regressor(path)

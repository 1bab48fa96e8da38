"""Configuration: defaults, environment variables, overrides, device and dtype choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from braindiff_app import config
from braindiff_app.config import load_settings, resolve_device, resolve_dtype, subject_folder


def test_env_then_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINDIFF_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("BRAINDIFF_TIER", "real")
    monkeypatch.setenv("BRAINDIFF_VD_DIR", str(tmp_path / "vd"))
    monkeypatch.setenv("BRAINDIFF_BUNDLES", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    settings = load_settings()
    assert settings.tier == "real" and settings.vd_dir == tmp_path / "vd"
    assert settings.workspace == tmp_path / "h" / "real"
    assert settings.bundle_dirs == (config.PRECOMPUTED_DIR, tmp_path / "h" / "bundles", tmp_path / "a", tmp_path / "b")
    overridden = load_settings(tier="demo", vd_dir=None, home=str(tmp_path / "x"))
    assert overridden.tier == "demo" and overridden.vd_dir == tmp_path / "vd" and overridden.home == tmp_path / "x"


def test_subject_dirs_and_demo_nsd(tmp_path):
    settings = load_settings(home=tmp_path)
    assert settings.subject_dir("regressors", 7) == tmp_path / "demo" / "regressors" / "subj07"
    assert settings.subject_dir("features", "average").name == "average"
    assert settings.nsd_dir == tmp_path / "demo" / "nsd"
    assert load_settings(home=tmp_path, tier="real").nsd_dir is None
    with pytest.raises(ValueError, match="kind: expected one of"):
        settings.subject_dir("weights", 1)
    assert subject_folder("2") == "subj02"
    with pytest.raises(ValueError, match="subject: expected an integer like 1 or 'average', got 'x'"):
        subject_folder("x")


def test_bad_choices_named():
    with pytest.raises(ValueError, match="tier: expected one of 'demo', 'real', got 'fake'"):
        load_settings(tier="fake")
    with pytest.raises(ValueError, match="device"):
        load_settings(device="tpu")


def test_device_and_dtype_on_cpu():
    import torch

    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.warns(RuntimeWarning, match="not available here; using the CPU"):
            assert resolve_device("cuda") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    with pytest.warns(RuntimeWarning, match="using float32"):
        assert resolve_dtype("float16", torch.device("cpu")) == torch.float32


def test_settings_paths_are_paths(tmp_path):
    settings = load_settings(home=str(tmp_path), eval_weights=str(tmp_path / "w"))
    assert isinstance(settings.home, Path) and settings.eval_weights == tmp_path / "w"


def test_model_locations_have_one_rule_per_tier(tmp_path):
    """Every command asks Settings which weights a tier uses: the demo tier always its committed models (a set
    vd_dir or checkpoint belongs to the real tier), the real tier the configured files."""
    from braindiff_app.config import DEMO_ASSETS_DIR

    demo = load_settings(home=tmp_path, tier="demo", vd_dir=tmp_path / "vd", vdvae_checkpoint=tmp_path / "x.th")
    assert demo.vd_path == DEMO_ASSETS_DIR / "models" / "vd"
    assert demo.vdvae_path == DEMO_ASSETS_DIR / "models" / "vdvae"
    assert demo.require_models() == (demo.vdvae_path, demo.vd_path)
    real = demo.with_overrides(tier="real")
    assert (real.vdvae_path, real.vd_path) == (tmp_path / "x.th", tmp_path / "vd")
    with pytest.raises(FileNotFoundError, match="model files missing for the real tier"):
        real.require_models()
    with pytest.raises(FileNotFoundError, match="not configured"):
        config.Settings(home=tmp_path, tier="real").require_models()

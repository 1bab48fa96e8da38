"""Feature extraction as library calls: the files written, their shapes, resuming, and no printing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from braindiff_app.config import load_settings
from braindiff_app.extraction import extract_clip_features, extract_vdvae_features
from braindiff_app.models.vdvae import VDVAEConfig
from tests.models.conftest import _make_vd_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prepare(settings, n_train=3, n_test=2, size=64):
    prepared = settings.subject_dir("prepared", 1)
    prepared.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        np.save(prepared / f"images_{split}.npy", rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
        (prepared / f"captions_{split}.json").write_text(json.dumps([["a red ball", "a ball"]] * n))


def test_extract_vdvae_features_returns_the_folder_and_reports_through_log(tmp_path, capsys):
    settings = load_settings(home=tmp_path, tier="demo", device="cpu")
    _prepare(settings)
    lines: list[str] = []
    out = extract_vdvae_features(settings, 1, progress=False, log=lines.append)
    assert out == settings.subject_dir("features", 1)
    n_latent = VDVAEConfig.demo().n_latent()
    assert np.load(out / "vdvae_train.npy").shape == (3, n_latent)
    assert np.load(out / "vdvae_test.npy").dtype == np.float32
    assert json.loads((out / "vdvae.json").read_text())["n_images"] == {"train": 3, "test": 2}
    assert [line.split()[0] for line in lines] == ["wrote", "wrote"]
    lines.clear()
    extract_vdvae_features(settings, 1, progress=False, log=lines.append)
    assert len(lines) == 2 and all("skipped" in line for line in lines)
    extract_vdvae_features(settings, 1, progress=False)  # no log: silent
    assert capsys.readouterr().out == ""  # library code never prints
    with pytest.raises(ValueError, match="mode"):
        extract_vdvae_features(settings, 1, mode="median")
    with pytest.raises(FileNotFoundError, match="images_train.npy: prepared images not found"):
        extract_vdvae_features(settings, 2)


def test_extract_clip_features_writes_token_features(tmp_path, capsys):
    vd = _make_vd_folder(tmp_path / "vd")
    settings = load_settings(home=tmp_path / "home", tier="real", vd_dir=vd, device="cpu")
    _prepare(settings, size=20)
    lines: list[str] = []
    out = extract_clip_features(settings, 1, batch_size=2, progress=False, log=lines.append)
    assert np.load(out / "clip_vision_train.npy").shape == (3, 257, 16)
    assert np.load(out / "clip_text_test.npy").shape == (2, 77, 16)
    assert json.loads((out / "clip.json").read_text())["clip_dim"] == 16
    assert lines == [f"wrote CLIP features to {out}"]
    lines.clear()
    extract_clip_features(settings, 1, progress=False, log=lines.append)
    assert sum("skipped" in line for line in lines) == 4
    assert capsys.readouterr().out == ""


def test_protocols_are_recorded_and_reference_features_differ(tmp_path):
    """--protocol reference: posterior samples and PIL bilinear input for the VDVAE; features made under another
    protocol are recomputed, never reused."""
    settings = load_settings(home=tmp_path, tier="demo", device="cpu")
    _prepare(settings)
    out = extract_vdvae_features(settings, 1, progress=False)
    ours = np.load(out / "vdvae_test.npy")
    meta = json.loads((out / "vdvae.json").read_text())
    assert (meta["protocol"], meta["mode"], meta["resize"]) == ("braindiff", "mean", "torch-bilinear")
    extract_vdvae_features(settings, 1, progress=False, protocol="reference")
    meta = json.loads((out / "vdvae.json").read_text())
    assert (meta["protocol"], meta["mode"], meta["resize"], meta["seed"]) == ("reference", "sample", "bilinear", 0)
    assert not np.allclose(np.load(out / "vdvae_test.npy"), ours)

"""``braindiff extract vdvae``: contract-3 features from contract-2 prepared images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from braindiff_app.cli import main
from braindiff_app.config import load_settings
from braindiff_app.models.vdvae import VDVAEConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prepare(home, n_train=5, n_test=3):
    settings = load_settings(home=home, tier="demo")
    prepared = settings.subject_dir("prepared", 1)
    prepared.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(prepared / "images_train.npy", rng.integers(0, 256, (n_train, 64, 64, 3), dtype=np.uint8))
    np.save(prepared / "images_test.npy", rng.integers(0, 256, (n_test, 64, 64, 3), dtype=np.uint8))
    return settings


def test_extract_vdvae_writes_features_and_resumes(tmp_path, capsys):
    settings = _prepare(tmp_path)
    argv = ["extract", "vdvae", "--subject", "1", "--home", str(tmp_path), "--tier", "demo", "--device", "cpu"]
    assert main(argv) == 0
    features = settings.subject_dir("features", 1)
    n_latent = VDVAEConfig.demo().n_latent()
    train = np.load(features / "vdvae_train.npy", allow_pickle=False)
    test = np.load(features / "vdvae_test.npy", allow_pickle=False)
    assert train.shape == (5, n_latent) and test.shape == (3, n_latent) and train.dtype == np.float32
    meta = json.loads((features / "vdvae.json").read_text())
    assert meta["n_latent"] == n_latent and meta["mode"] == "mean" and meta["n_images"] == {"train": 5, "test": 3}
    assert sum(np.prod(s) for s in meta["layer_shapes"]) == n_latent
    capsys.readouterr()
    assert main(argv) == 0  # same model and options: both splits are skipped
    assert capsys.readouterr().out.count("skipped") == 2
    np.testing.assert_array_equal(np.load(features / "vdvae_train.npy"), train)
    # A damaged mark (a truncated vdvae.json): the rerun extracts again and rewrites it, no bare JSON error.
    with open(features / "vdvae.json", "r+b") as f:
        f.truncate(20)
    assert main(argv) == 0
    assert json.loads((features / "vdvae.json").read_text()) == meta
    np.testing.assert_array_equal(np.load(features / "vdvae_train.npy"), train)


def test_extract_vdvae_without_prepared_data_is_one_line_error(tmp_path, capsys):
    assert main(["extract", "vdvae", "--subject", "2", "--home", str(tmp_path), "--tier", "demo"]) == 1
    err = capsys.readouterr().err
    assert "images_train.npy: prepared images not found" in err and "braindiff prepare" in err


def test_extract_vdvae_real_tier_needs_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BRAINDIFF_VDVAE_CHECKPOINT", raising=False)
    settings = load_settings(home=tmp_path, tier="real")
    prepared = settings.subject_dir("prepared", 1)
    prepared.mkdir(parents=True)
    for split in ("train", "test"):
        np.save(prepared / f"images_{split}.npy", np.zeros((1, 64, 64, 3), np.uint8))
    assert main(["extract", "vdvae", "--subject", "1", "--home", str(tmp_path), "--tier", "real"]) == 1
    assert "BRAINDIFF_VDVAE_CHECKPOINT" in capsys.readouterr().err

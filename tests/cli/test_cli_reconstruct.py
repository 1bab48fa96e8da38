"""``braindiff reconstruct`` command line (tiny regressors, stand-in stages)."""

from __future__ import annotations

import json
import re

import pytest

import braindiff_app.reconstruct as reconstruct_module
from braindiff_app.bundles import open_bundle
from braindiff_app.cli import main
from braindiff_app.regression import load_regressors
from tests._standins import install_stand_ins, make_workspace, stand_in_pipeline


@pytest.fixture
def settings(tmp_path, monkeypatch):
    install_stand_ins(monkeypatch)
    settings = make_workspace(tmp_path)
    monkeypatch.setattr(reconstruct_module, "load_pipeline",
                        lambda settings, subject, device=None, protocol=None: stand_in_pipeline(
                            {} if subject == "average" else load_regressors(settings, subject)))
    return settings


def test_reconstruct_cli_writes_keeps_up_to_date_and_refuses_to_overwrite(settings, capsys):
    args = ["reconstruct", "--subject", "1", "--ablations", "no_vision", "--limit", "2", "--home", str(settings.home)]
    assert main(args) == 0
    bundle = open_bundle(settings.home / "bundles" / "demo-subj01")
    assert bundle.n_trials == 2 and bundle.kinds[-1] == "no_vision" and bundle.manifest.settings["seed"] == 0
    written = (settings.home / "bundles" / "demo-subj01" / "trials.json").stat().st_mtime_ns
    assert main(args) == 0  # the same settings: up to date, kept as it is
    assert (settings.home / "bundles" / "demo-subj01" / "trials.json").stat().st_mtime_ns == written
    capsys.readouterr()
    assert main(args + ["--seed", "4"]) == 1
    assert "settings.seed: 0 -> 4" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--seed", "4"]) == 0
    assert open_bundle(settings.home / "bundles" / "demo-subj01").manifest.settings["seed"] == 4


def test_refitted_regressors_make_the_bundle_outdated(settings, capsys):
    from braindiff_app.regression import save_regressor
    from tests._standins import fit_regressors

    args = ["reconstruct", "--subject", "1", "--limit", "2", "--home", str(settings.home)]
    assert main(args) == 0
    models = open_bundle(settings.home / "bundles" / "demo-subj01").manifest.models
    assert len(models["fingerprints"]["regressors subj01"]) == 16
    assert main(args) == 0  # same files: up to date
    for name, reg in fit_regressors(seed=99).items():  # refitted (same alphas, same paths, other weights)
        save_regressor(reg, settings.subject_dir("regressors", 1) / f"{name}.safetensors")
    capsys.readouterr()
    assert main(args) == 1
    assert "models.fingerprints" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def test_files_fingerprint_follows_content_not_path(tmp_path):
    import os
    import time

    from braindiff_app.provenance import files_fingerprint

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"a" * 100)
    first = files_fingerprint(folder)
    assert files_fingerprint(folder) == first and files_fingerprint(tmp_path / "missing") is None
    (folder / "weights.bin").write_bytes(b"b" * 100)  # same size, other content (a later file time, as a
    os.utime(folder / "weights.bin", ns=(time.time_ns() + 10**9,) * 2)  # retraining has: the cache keys on it)
    assert files_fingerprint(folder) != first


def test_reconstruct_cli_average_and_bad_subject(settings, capsys):
    assert main(["reconstruct", "--subject", "average", "--home", str(settings.home)]) == 0
    assert open_bundle(settings.home / "bundles" / "demo-average").n_trials == 4
    assert main(["reconstruct", "--subject", "5", "--home", str(settings.home)]) == 1
    assert "regressors of subj05 missing" in capsys.readouterr().err


def test_reconstruct_cli_writes_the_committed_bundles_stage2_settings(settings):
    """No stage-2 flags: the manifest's stage-2 settings are those of the committed demo bundles, key for key."""
    import json
    from pathlib import Path

    import braindiff_app
    from braindiff_app.stage2 import STAGE2_FIELDS, Stage2Settings

    assert main(["reconstruct", "--subject", "1", "--limit", "1", "--home", str(settings.home)]) == 0
    written = open_bundle(settings.home / "bundles" / "demo-subj01").manifest
    committed_path = Path(braindiff_app.__file__).parent / "precomputed" / "demo-subj01" / "manifest.json"
    committed = json.loads(committed_path.read_text())["settings"]
    keys = [*STAGE2_FIELDS, "mixing", "seed", "rescale"]
    assert list(written.settings)[:len(keys)] == list(committed)[:len(keys)] == keys
    assert {k: written.settings[k] for k in keys} == {k: committed[k] for k in keys}
    assert written.stage2 == Stage2Settings.for_tier("demo")


def test_protocol_is_passed_to_the_pipeline_and_recorded_in_the_manifest(settings, monkeypatch, capsys):
    from braindiff_app.protocol import get_protocol

    def load(settings, subject, device=None, protocol=None):
        pipe = stand_in_pipeline(load_regressors(settings, subject))
        pipe.protocol = get_protocol(protocol)
        return pipe

    monkeypatch.setattr(reconstruct_module, "load_pipeline", load)
    args = ["reconstruct", "--subject", "1", "--limit", "2", "--home", str(settings.home)]
    assert main(args) == 0
    assert open_bundle(settings.home / "bundles" / "demo-subj01").manifest.settings["protocol"] == "braindiff"
    capsys.readouterr()
    assert main(args + ["--protocol", "reference"]) == 1  # another protocol: the bundle is outdated
    assert "settings.protocol: 'braindiff' -> 'reference'" in capsys.readouterr().err
    assert main(args + ["--protocol", "reference", "--overwrite"]) == 0
    assert open_bundle(settings.home / "bundles" / "demo-subj01").manifest.settings["protocol"] == "reference"


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.update(n_trials="abc"), r"manifest.json: n_trials: expected an integer >= 1, got str 'abc'"),
    (lambda m: m.update(settings=[1, 2]), r"manifest.json: settings: expected an object, got list"),
    (b"\xff{", r"manifest.json: not UTF-8 text"),
])
def test_reconstruct_names_the_field_of_a_damaged_existing_manifest(settings, capsys, damage, message):
    args = ["reconstruct", "--subject", "1", "--limit", "2", "--home", str(settings.home)]
    assert main(args) == 0
    path = settings.home / "bundles" / "demo-subj01" / "manifest.json"
    if isinstance(damage, bytes):
        path.write_bytes(damage)
    else:
        data = json.loads(path.read_text())
        damage(data)
        path.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "pass --overwrite to replace it" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert main(args + ["--overwrite"]) == 0  # replaced by a sound bundle
    assert open_bundle(settings.home / "bundles" / "demo-subj01").n_trials == 2


def _write_true_features(settings, subject=1, n=5, rows=None):
    """Extracted test features of the stand-in sizes, one row per test trial (``rows`` to break that)."""
    import numpy as np

    from tests._standins import CLIP_DIM, N_LATENT, N_TOKENS_T, N_TOKENS_V

    folder = settings.subject_dir("features", subject)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    shapes = {"vdvae": (N_LATENT,), "clip_vision": (N_TOKENS_V, CLIP_DIM), "clip_text": (N_TOKENS_T, CLIP_DIM)}
    values = {name: rng.normal(size=(rows or n, *shape)).astype(np.float32) for name, shape in shapes.items()}
    for name, array in values.items():
        np.save(folder / f"{name}_test.npy", array)
    return values


def test_reconstruct_from_true_features_uses_the_extracted_features_and_no_regressor(settings, monkeypatch):
    import numpy as np

    from braindiff_app.pipeline import trial_seeds
    from tests._standins import decode_latents

    true = _write_true_features(settings)
    loaded = []
    monkeypatch.setattr(reconstruct_module, "load_pipeline", lambda settings, subject, device=None, protocol=None: (
        loaded.append(subject) or stand_in_pipeline({})))
    args = ["reconstruct", "--subject", "1", "--features", "true", "--ablations", "no_vdvae",
            "--home", str(settings.home)]
    assert main(args) == 0
    assert loaded == [None]  # no regressors loaded
    bundle = open_bundle(settings.home / "bundles" / "demo-subj01-true-features")
    assert bundle.features == "true" and bundle.subject == "1" and bundle.n_trials == 5
    assert bundle.kinds == ("ground_truth", "vdvae", "final", "no_vdvae")
    assert "alphas" not in bundle.manifest.settings and "rescale" not in bundle.manifest.settings
    assert "regressors subj01" not in bundle.manifest.models["fingerprints"]
    assert len(bundle.manifest.models["fingerprints"]["features subj01 vdvae_test"]) == 16
    # The VDVAE guess is the stand-in decoder of the file's own latents with each trial's seed.
    ids = np.array([100, 101, 102, 103, 104])
    expected = decode_latents(None, true["vdvae"], seeds=trial_seeds(ids, 0))
    for i in range(5):
        np.testing.assert_array_equal(bundle.image(i, "vdvae"), expected[i])
    predicted = open_bundle(reconstruct_module.reconstruct_subject(settings, 1, limit=5, progress=False))
    assert predicted.features == "predicted" and predicted.name == "demo-subj01"
    assert "features" not in predicted.manifest.settings  # predicted manifests as they were before the choice
    assert not np.array_equal(predicted.image(0, "vdvae"), bundle.image(0, "vdvae"))
    assert main(args) == 0  # up to date
    _write_true_features(settings, n=5)  # the same again: still up to date
    np.save(settings.subject_dir("features", 1) / "vdvae_test.npy", true["vdvae"] + 1)  # re-extracted: outdated
    assert main(args) == 1


def test_reconstruct_from_true_features_refuses_bad_requests(settings, capsys):
    home = ["--home", str(settings.home)]
    assert main(["reconstruct", "--subject", "average", "--features", "true", *home]) == 1
    assert "true features are a subject's own test images' features" in capsys.readouterr().err
    assert main(["reconstruct", "--subject", "1", "--features", "true", *home]) == 1
    err = capsys.readouterr().err
    assert "vdvae_test.npy: missing; run `braindiff extract vdvae --subject 1`" in err
    _write_true_features(settings, rows=3)
    assert main(["reconstruct", "--subject", "1", "--features", "true", *home]) == 1
    err = capsys.readouterr().err
    assert "vdvae_test.npy: expected one row per test trial (5 rows), got shape (3, 192)" in err
    assert not (settings.home / "bundles" / "demo-subj01-true-features").exists()
    _write_true_features(settings)
    assert main(["reconstruct", "--subject", "1", "--features", "true", "--rescale", "train", *home]) == 1
    assert "rescale: re-scales predicted features" in capsys.readouterr().err


@pytest.mark.parametrize("value", [True, "True", "measured"])
def test_a_manifest_s_features_field_is_checked(tmp_path, value):
    from braindiff_app.bundles import BundleError, Manifest

    with pytest.raises(BundleError, match=r"settings.features: expected one of \['predicted', 'true'\], got"):
        Manifest(name="demo-subj01", subject="1", tier="demo", n_trials=2, settings={"features": value})
    assert Manifest(name="x", subject="1", tier="demo", n_trials=2, settings={"features": "true"})

"""``braindiff prepare`` and ``braindiff fit`` end to end on a tiny NSD folder."""

import json

import numpy as np
import pytest

from braindiff_app.cli import main
from braindiff_app.regression import load_regressor


def test_prepare_then_fit(tmp_path, capsys, tiny_nsd):
    tiny = tiny_nsd
    home = tmp_path / "home"
    common = ["--home", str(home), "--tier", "real"]
    assert main(["prepare", "--nsd-root", str(tiny.root), "--subject", "1", "--no-progress", *common]) == 0
    prepared = home / "real" / "prepared" / "subj01"
    meta = json.loads((prepared / "meta.json").read_text())
    out = capsys.readouterr().out
    assert "train / " in out and "note:" not in out  # the tiny NSD has ncsnr.nii.gz
    assert np.load(prepared / "ncsnr.npy").shape == (int(tiny.mask.sum()),)
    n_train, n_test = len(meta["nsd_ids_train"]), len(meta["nsd_ids_test"])

    # Missing features: one line naming the file and the command that makes it.
    assert main(["fit", "--subject", "1", "--no-progress", "--backend", "numpy", *common]) == 1
    assert "vdvae_train.npy: missing; extract the features first (`braindiff extract vdvae`)" in \
        capsys.readouterr().err

    features = home / "real" / "features" / "subj01"
    features.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shapes = {"vdvae": (12,), "clip_vision": (257, 2), "clip_text": (77, 2)}
    for name, shape in shapes.items():
        np.save(features / f"{name}_train.npy", rng.normal(size=(n_train, *shape)).astype(np.float32))
    args = ["fit", "--subject", "1", "--no-progress", "--alpha-vdvae", "10", "--n-targets-batch", "100",
            "--backend", "numpy", *common]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "clip_vision: saved" in out
    fmri_test = np.load(prepared / "fmri_test.npy")
    for name, shape in shapes.items():
        reg = load_regressor(home / "real" / "regressors" / "subj01" / f"{name}.safetensors")
        assert reg.predict(fmri_test).shape == (n_test, *shape)
    assert float(load_regressor(home / "real" / "regressors" / "subj01" / "vdvae.safetensors").alpha_[0]) == 10.0
    assert main(args) == 0
    assert "exists (skipped" in capsys.readouterr().out


def test_prepare_without_nsd_root_uses_demo_nsd_dir(tmp_path, capsys, make_nsd):
    home = tmp_path / "home"
    make_nsd(home / "demo" / "nsd", ncsnr=False)  # the demo tier's simulated NSD location
    assert main(["prepare", "--subject", "1", "--no-progress", "--home", str(home), "--tier", "demo"]) == 0
    assert (home / "demo" / "prepared" / "subj01" / "meta.json").is_file()
    assert "note: no ncsnr.nii.gz at " in capsys.readouterr().out
    assert not (home / "demo" / "prepared" / "subj01" / "ncsnr.npy").exists()
    assert main(["prepare", "--subject", "2", "--no-progress", "--home", str(home), "--tier", "demo"]) == 1
    assert "nsdgeneral.nii.gz not found" in capsys.readouterr().err


def test_fit_defaults_to_the_tiers_alphas(tmp_path, capsys):
    """Real tier: the paper's alphas; demo tier: the paper's x training images / 8859 (the same penalty per image,
    the paper's being chosen for NSD subject 1's 8859); a flag overrides one target; a changed alpha refits."""
    home, n = tmp_path / "home", 40
    rng = np.random.default_rng(1)
    for tier in ("real", "demo"):
        prepared, features = home / tier / "prepared" / "subj01", home / tier / "features" / "subj01"
        prepared.mkdir(parents=True)
        features.mkdir(parents=True)
        np.save(prepared / "fmri_train.npy", rng.normal(0, 300, (n, 16)).astype(np.float32))
        (prepared / "meta.json").write_text("{}")
        np.save(features / "clip_text_train.npy", rng.normal(size=(n, 77, 2)).astype(np.float32))
        np.save(features / "vdvae_train.npy", rng.normal(size=(n, 6)).astype(np.float32))

    def alpha(tier, name):
        return float(load_regressor(home / tier / "regressors" / "subj01" / f"{name}.safetensors").alpha_[0])

    base = ["fit", "--subject", "1", "--targets", "clip_text", "vdvae", "--no-progress", "--backend", "numpy",
            "--home", str(home)]
    assert main([*base, "--tier", "real"]) == 0
    assert alpha("real", "clip_text") == 100000.0 and alpha("real", "vdvae") == 50000.0
    assert main([*base, "--tier", "demo", "--alpha-vdvae", "7"]) == 0
    assert alpha("demo", "clip_text") == pytest.approx(100000 * n / 8859, rel=1e-3) and alpha("demo", "vdvae") == 7
    capsys.readouterr()
    assert main([*base, "--tier", "demo"]) == 0  # vdvae was fitted with 7: refitted with the tier's alpha
    out = capsys.readouterr().out
    assert "vdvae: " in out and "was fitted with alpha 7" in out and "clip_text: " in out and "exists" in out
    assert alpha("demo", "vdvae") == pytest.approx(50000 * n / 8859, rel=1e-3)

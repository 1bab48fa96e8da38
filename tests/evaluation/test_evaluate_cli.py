"""``braindiff evaluate`` on a small generated bundle."""

from __future__ import annotations

import shutil

from braindiff_app.bundles import open_bundle
from braindiff_app.cli import main
from braindiff_app.evaluation import BACKBONES
from tests.factories import make_bundle


def test_evaluate_writes_metrics_and_tables(tmp_path, weights_dir, capsys):
    path = make_bundle(tmp_path / "bundles", kinds=("ground_truth", "vdvae", "final")).path
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(weights_dir / BACKBONES["efficientnet"].files[0], weights)
    code = main(["evaluate", str(path), "--metrics", "PixCorr", "SSIM", "EffNet-B", "SwAV", "--kinds", "final", "--out",
                 str(tmp_path / "reports"), "--eval-weights", str(weights), "--home", str(tmp_path / "home"),
                 "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "skipped: " in out and "swav_800ep_pretrain.pth.tar: missing" in out and "SwAV" in out
    metrics = open_bundle(path).metrics
    assert set(metrics) == {"final"}
    assert set(metrics["final"]) == {"PixCorr", "SSIM", "EffNet-B"}
    table = (tmp_path / "reports" / "table1.md").read_text()
    assert "| Subject | PixCorr ↑ | SSIM ↑ | EffNet-B ↓ |" in table
    assert (tmp_path / "reports" / "distributions_test-subj01.png").is_file()


def test_evaluate_by_name_and_default_out(tmp_path, monkeypatch, capsys):
    make_bundle(tmp_path / "extra", kinds=("ground_truth", "vdvae", "final"))
    monkeypatch.setenv("BRAINDIFF_BUNDLES", str(tmp_path / "extra"))
    code = main(["evaluate", "test-subj01", "--metrics", "PixCorr", "--home", str(tmp_path / "home")])
    assert code == 0
    assert (tmp_path / "home" / "reports" / "table1.md").is_file()
    assert main(["evaluate", "no-such-bundle", "--home", str(tmp_path / "home")]) == 1
    assert "no-such-bundle: no such bundle folder" in capsys.readouterr().err

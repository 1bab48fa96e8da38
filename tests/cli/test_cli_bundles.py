"""``braindiff bundles``: what the app would browse, and what it could not open."""

from __future__ import annotations

from braindiff_app.bundles import write_metrics
from braindiff_app.cli import main
from tests.factories import make_bundle


def test_bundles_lists_each_bundle_and_each_broken_folder(tmp_path, capsys):
    extra = tmp_path / "extra"
    make_bundle(tmp_path / "home" / "bundles", name="demo-subj01", subject="1", n_trials=3,
                kinds=("ground_truth", "vdvae", "final"))
    average = make_bundle(extra, name="demo-average", subject="average", n_trials=4)
    write_metrics(average.path, {"final": {"PixCorr": [0.1, 0.2, 0.3, 0.4], "SSIM": [0.5] * 4}})
    (extra / "half.partial").mkdir()
    (extra / "half.partial" / "manifest.json").write_text("{}")
    assert main(["bundles", "--home", str(tmp_path / "home"), "--bundles", str(extra)]) == 0
    out = capsys.readouterr().out
    assert "2 bundle(s):" in out
    assert ("  demo-subj01  subject 1  tier demo  3 trials  metrics: none  kinds: ground_truth, vdvae, final\n"
            f"      {tmp_path / 'home' / 'bundles' / 'demo-subj01'}\n") in out
    assert "  demo-average  subject average  tier demo  4 trials  metrics: PixCorr, SSIM  kinds: ground_truth," in out
    assert out.index("demo-subj01") < out.index("demo-average")  # the app's order: subjects, then the average
    assert "1 folder(s) could not be opened:" in out
    assert f"{extra / 'half.partial'}: written halfway" in out


def test_bundles_with_none_says_how_to_make_one(tmp_path, capsys):
    assert main(["bundles", "--home", str(tmp_path / "home")]) == 0
    out = capsys.readouterr().out
    assert "0 bundle(s); write one with `braindiff reconstruct`" in out
    assert "could not be opened" not in out

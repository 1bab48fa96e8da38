"""bench/legibility.py: the contact sheet, the noiseless responses and a --quick run on a tiny simulated world."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests._bench import load_bench

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "braindiff_app" / "precomputed" / "demo-subj01"


def _bench():
    return load_bench("legibility")


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="no committed demo bundle")
def test_contact_sheet_shows_each_trial_seen_guess_final(tmp_path):
    from braindiff_app.bundles import open_bundle

    out = tmp_path / "sheet.png"
    _bench().contact_sheet(BUNDLE, out, n=6, per_row=2, side=128)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    # 2 trials per row, 3 tiles of 128 px (2 px apart) and 6 px padding; a 20 px header; 3 rows.
    assert sheet.shape == (20 + 3 * (128 + 6) + 6, 2 * (3 * 128 + 4 + 6) + 6, 3)
    bundle = open_bundle(BUNDLE)
    for r, c in [(0, 0), (0, 1), (2, 1)]:
        t = 2 * r + c
        x0, y0 = 6 + c * (3 * 128 + 4 + 6), 20 + r * (128 + 6)
        for k, kind in enumerate(("ground_truth", "vdvae", "final")):
            image = bundle.image(t, kind)
            factor = 128 // image.shape[0]
            expected = image.repeat(factor, axis=0).repeat(factor, axis=1)  # nearest-neighbour upscaling
            tile = sheet[y0:y0 + 128, x0 + k * 130:x0 + k * 130 + 128]
            np.testing.assert_array_equal(tile, expected)


@pytest.mark.slow
def test_quick_run_on_a_tiny_simulated_world(tmp_path, capsys):
    """Simulate, prepare, extract and fit one subject (12 test, 48 training images), then run --quick end to end."""
    from braindiff_app.cli import main
    from braindiff_app.config import load_settings
    from braindiff_app.demo.simulate import load_voxel_model
    from braindiff_app.demo.simulated_nsd import simulation_dir
    from braindiff_app.reconstruct import load_test_set

    home = tmp_path / "home"
    common = ["--home", str(home), "--tier", "demo"]
    settings = load_settings(home=home, tier="demo")
    assert main(["demo", "simulate", "--out", str(settings.nsd_dir), "--n-test", "12", "--n-train", "48",
                 "--subjects", "1", "--image-size", "64"]) == 0
    # The paper's alphas (the demo tier's default scales them to the training size): the bench's refit with
    # --alpha-scale 1 must then give the very same regressors.
    paper = ["--alpha-vdvae", "50000", "--alpha-vision", "60000", "--alpha-text", "100000"]
    for argv in (["prepare", "--subject", "1", "--no-progress"], ["extract", "vdvae", "--subject", "1"],
                 ["extract", "clip", "--subject", "1"], ["fit", "--subject", "1", *paper]):
        assert main([*argv, *common]) == 0, argv
    bench = _bench()

    # The noiseless responses: the prepared test fMRI (mean of 3 noisy repetitions) minus them is the trial noise,
    # whose variance the simulation sets (noise_sd^2 / 3, in beta units x 300); a wrong voxel order or scale is not.
    test = load_test_set(settings, 1)
    ijk = np.load(settings.subject_dir("prepared", 1) / "voxel_ijk.npy")
    clean = bench.noiseless_fmri(settings, "1", test.trial_ids, ijk)
    assert clean.shape == test.fmri.shape and np.isfinite(clean).all()
    model = load_voxel_model(simulation_dir(settings.nsd_dir) / "subj01_voxels.npz")
    order = {tuple(v): i for i, v in enumerate(model.ijk.tolist())}
    noise_sd = model.noise_sd[[order[tuple(v)] for v in ijk.tolist()]] * 300
    residual = np.asarray(test.fmri) - clean
    ratio = residual.var(axis=0, ddof=1).mean() / (noise_sd ** 2 / 3).mean()
    assert 0.8 < ratio < 1.2, ratio
    shuffled = np.asarray(test.fmri)[::-1] - clean
    assert shuffled.var(axis=0, ddof=1).mean() > 1.3 * residual.var(axis=0, ddof=1).mean()

    capsys.readouterr()
    bench.main(["--home", str(home), "--quick", "--bundles", str(tmp_path / "none"),
                "--stages", "true,noiseless,noiseless-fit,fmri,refit"])
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^  (\(\w+\) [^:]+: [\w ]+?)\s+(\d+\.\d)% \[", out, flags=re.M))
    for stage in ("(a) true features", "(b) noiseless response", "(b2) noiseless train + test",
                  "(c) prepared fMRI"):
        assert 0 <= float(rows[f"{stage}: final"]) <= 100 and f"{stage}: VDVAE guess alone" in rows
    # Refitted with the paper's alphas (x 1), the regressors are those `braindiff fit` wrote: the same images.
    assert rows["(c2) prepared fMRI, refitted: final"] == rows["(c) prepared fMRI: final"]
    assert re.search(r"^  \(c2\) - \(c\), alphas x 1(\.0)? +\+0\.0 \[", out, flags=re.M)
    assert "(a) true features: no VDVAE init" in rows
    assert "(c) prepared fMRI: no VDVAE init" not in rows
    assert re.search(r"^  \(a\) true features: quick-steps4 +[+-]\d+\.\d \[", out, flags=re.M)
    assert re.search(r"^  \(c\) prepared fMRI: quick-steps4 +[+-]\d+\.\d \[", out, flags=re.M)
    assert "12 test images" in out
    assert 0 <= float(rows["(a0) AutoKL round trip: seen image without UNet"]) <= 100

    # The round trip gives each seen image back (blurred), not noise nor another image.
    from braindiff_app.pipeline import load_pipeline

    pipeline = load_pipeline(settings, "1")
    images = np.asarray(test.images)[:6]
    back = bench.autokl_round_trip(pipeline, images, np.arange(6))
    side = pipeline.image_size
    assert back.shape == (6, side, side, 3) and back.dtype == np.uint8
    small = np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BICUBIC)) for im in images]).astype(int)
    own = np.abs(back - small).mean()
    assert own < np.abs(back - small[::-1]).mean() and own < np.abs(back - 127).mean()

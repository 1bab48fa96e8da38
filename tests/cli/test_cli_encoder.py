"""``braindiff fit-encoder`` and ``braindiff encode`` (the committed demo workspace's encoders and models)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from braindiff_app.cli import main
from braindiff_app.config import PACKAGE_DIR, load_settings
from braindiff_app.data.atlas import load_atlas
from braindiff_app.data.flatmap import load_flatmap
from braindiff_app.regression.encoder import load_encoder
from braindiff_app.roi import flatmap_voxel_lookup
from tests.regression.test_encoder import _prepared

DEMO_HOME = PACKAGE_DIR / "assets" / "demo" / "home"


def test_fit_encoder_writes_the_workspace_file(tmp_path, capsys):
    settings = load_settings(home=tmp_path / "home", tier="real")
    prepared, features, _ = _prepared(tmp_path)
    for src, kind in ((prepared, "prepared"), (features, "features")):
        settings.subject_dir(kind, 3).parent.mkdir(parents=True, exist_ok=True)
        src.rename(settings.subject_dir(kind, 3))
    argv = ["fit-encoder", "--subject", "3", "--feature-set", "vdvae", "--rank", "2", "--home",
            str(tmp_path / "home"), "--tier", "real"]
    assert main(argv) == 0
    out = settings.subject_dir("encoders", 3) / "encoder.safetensors"
    assert load_encoder(out).metadata["subject"] == "3"
    assert "median test r" in capsys.readouterr().out
    assert main(argv) == 0 and "exists (skipped" in capsys.readouterr().out


def test_fit_encoder_prints_the_noise_normalised_accuracy_per_region(tmp_path, capsys):
    import json
    import re

    from braindiff_app.data import nsd_layout as L

    settings = load_settings(home=tmp_path / "home", tier="real")
    prepared, features, _ = _prepared(tmp_path, v=25)
    general = np.ones((5, 5, 1), np.int16)  # 25 nsdgeneral voxels, C order = the prepared columns
    visual = np.zeros((5, 5, 1), np.int16)
    visual[0] = 1  # V1v: voxels 0-4
    visual[1] = 3  # V2v: voxels 5-9
    L.write_roi(tmp_path / "nsd", 3, "nsdgeneral", general)
    L.write_roi(tmp_path / "nsd", 3, "prf-visualrois", visual)
    np.save(prepared / "voxel_ijk.npy", np.argwhere(general == 1))
    ncsnr = np.random.default_rng(5).uniform(0.2, 1.2, 25).astype(np.float32)
    np.save(prepared / "ncsnr.npy", ncsnr)
    meta = json.loads((prepared / "meta.json").read_text())
    (prepared / "meta.json").write_text(json.dumps({**meta, "repetitions_test": [3] * 15}))
    for src, kind in ((prepared, "prepared"), (features, "features")):
        settings.subject_dir(kind, 3).parent.mkdir(parents=True, exist_ok=True)
        src.rename(settings.subject_dir(kind, 3))
    assert main(["fit-encoder", "--subject", "3", "--feature-set", "vdvae", "--rank", "2", "--home",
                 str(tmp_path / "home"), "--tier", "real", "--nsd-root", str(tmp_path / "nsd")]) == 0
    out = capsys.readouterr().out
    r = load_encoder(settings.subject_dir("encoders", 3) / "encoder.safetensors").evaluation["accuracy"]
    nc = 100 * ncsnr.astype(np.float64) ** 2 / (ncsnr.astype(np.float64) ** 2 + 1 / 3)
    normalised = r.astype(np.float64) ** 2 / (nc / 100)  # every NC here is above the 1% floor
    line = next(x for x in out.splitlines() if x.startswith("median r^2 / noise ceiling"))
    assert "25 of 25" in line
    printed = dict(re.findall(r"(\w+) (-?\d+\.\d{3})(?:,|$)", line.split("): ", 1)[1]))
    assert set(printed) == {"all", "V1", "V2"}
    for name, idx in (("all", slice(None)), ("V1", slice(0, 5)), ("V2", slice(5, 10))):
        assert float(printed[name]) == pytest.approx(np.median(normalised[idx]), abs=6e-4)


def test_encode_writes_pattern_and_flatmap(tmp_path):
    image = np.asarray(Image.open(PACKAGE_DIR / "precomputed" / "demo-subj01" / "images" / "ground_truth"
                                  / "00000.png").convert("RGB"))
    path = tmp_path / "face.png"
    Image.fromarray(image).save(path)
    assert main(["encode", "--subject", "1", "--image", str(path), "--home", str(tmp_path / "empty")]) == 0
    with np.load(tmp_path / "face-subj01.npz") as npz:
        response, ijk = npz["response"], npz["voxel_ijk"]
    encoder = load_encoder(DEMO_HOME / "demo" / "encoders" / "subj01" / "encoder.safetensors")
    assert response.shape == (encoder.n_voxels,) and ijk.shape == (encoder.n_voxels, 3)
    assert np.isfinite(response).all() and response.std() > 0.1
    drawn = np.asarray(Image.open(tmp_path / "face-subj01.png"))
    atlas = load_atlas(DEMO_HOME / "demo" / "nsd", 1, voxel_ijk=np.load(DEMO_HOME / "demo" / "prepared" / "subj01"
                                                                        / "voxel_ijk.npy"))
    lookup = flatmap_voxel_lookup(load_flatmap().pixel_voxel, atlas)
    shown = np.unique(lookup[lookup >= 0])  # voxels the flatmap shows
    top, bottom = shown[np.argmax(response[shown])], shown[np.argmin(response[shown])]
    assert drawn[lookup == top][:, 0].mean() > drawn[lookup == top][:, 2].mean() + 60  # most active: red
    assert drawn[lookup == bottom][:, 2].mean() > drawn[lookup == bottom][:, 0].mean() + 60  # least: blue


def test_encode_for_the_average_says_encoders_are_per_subject(tmp_path, capsys):
    path = tmp_path / "img.png"
    Image.new("RGB", (16, 16)).save(path)
    assert main(["encode", "--subject", "average", "--image", str(path), "--home", str(tmp_path / "h")]) == 1
    err = capsys.readouterr().err  # was: "invalid literal for int() with base 10: 'average'"
    assert "--subject: expected a subject number with an encoder (1, 2, 5, 7), got 'average'" in err


@pytest.mark.parametrize(("content", "match"), [
    (b"not an image", "not an image PIL can read"),
    (None, "at least 8 x 8 pixels, got 1 x 1"),
])
def test_encode_bad_images_give_a_clear_message(tmp_path, capsys, content, match):
    path = tmp_path / "bad.png"
    if content is None:
        Image.new("RGB", (1, 1)).save(path)
    else:
        path.write_bytes(content)
    assert main(["encode", "--subject", "1", "--image", str(path), "--home", str(tmp_path / "empty")]) != 0
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert not list(tmp_path.glob("bad-subj01*"))

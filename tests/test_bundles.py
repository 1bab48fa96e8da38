"""Bundle format: round trip, laziness, validation errors, halfway runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from braindiff_app.bundles import (
    IMAGE_KINDS,
    BundleError,
    BundleWriter,
    Manifest,
    find_bundles,
    open_bundle,
    validate_bundle,
    write_metrics,
)
from tests.factories import make_bundle, synthetic_image


def test_round_trip_images_captions_ids(tmp_path):
    bundle = make_bundle(tmp_path, n_trials=4, size=16)
    reopened = validate_bundle(bundle.path)
    assert reopened.n_trials == 4 and reopened.kinds == IMAGE_KINDS
    assert reopened.trials[2].trial_id == 1014
    assert reopened.trials[2].captions[0].startswith("a photo of a red ball")
    for kind in IMAGE_KINDS:
        np.testing.assert_array_equal(reopened.image(3, kind), synthetic_image(3, IMAGE_KINDS.index(kind), 16))
    assert not (bundle.path.parent / "test-subj01.partial").exists()


def test_open_is_lazy_reads_no_image(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path, n_trials=3, size=8)
    import PIL.Image

    def boom(*args, **kwargs):
        raise AssertionError("an image was read while opening")

    monkeypatch.setattr(PIL.Image, "open", boom)
    reopened = open_bundle(bundle.path)
    assert reopened.image_path(1, "final").name == "00001.png"
    with pytest.raises(AssertionError):
        reopened.image(1, "final")


def test_search_by_caption_and_id(bundle):
    assert bundle.search("FACE") == [0]
    assert bundle.search("1007") == [1]
    assert bundle.search("") == list(range(bundle.n_trials))
    assert bundle.search("zebra") == []


def test_metrics_round_trip_and_shape_check(bundle):
    write_metrics(bundle.path, {"final": {"PixCorr": np.arange(6) / 10}})
    write_metrics(bundle.path, {"vdvae": {"SSIM": [np.nan, 1, 2, 3, 4, 5]}})
    reopened = open_bundle(bundle.path)
    assert reopened.trial_metrics(2)["final"]["PixCorr"] == pytest.approx(0.2)
    assert np.isnan(reopened.metrics["vdvae"]["SSIM"][0])
    with pytest.raises(ValueError, match=r"expected shape \(6,\)"):
        write_metrics(bundle.path, {"final": {"PixCorr": [1.0, 2.0]}})
    with pytest.raises(ValueError, match="kind 'bogus' is not in bundle"):
        write_metrics(bundle.path, {"bogus": {"PixCorr": np.zeros(6)}})


def test_missing_image_is_named(bundle):
    (bundle.path / "images" / "no_text" / "00004.png").unlink()
    with pytest.raises(BundleError, match=r"no_text/00004.png: image missing \(trial 4, kind 'no_text'\)"):
        validate_bundle(bundle.path)
    with pytest.raises(BundleError, match="image missing"):
        open_bundle(bundle.path).image(4, "no_text")


def test_wrong_manifest_version(bundle):
    path = bundle.path / "manifest.json"
    data = json.loads(path.read_text())
    data["version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="manifest version 99, this braindiff reads version 1"):
        open_bundle(bundle.path)


def test_mismatched_trial_counts(bundle):
    path = bundle.path / "trials.json"
    path.write_text(json.dumps(json.loads(path.read_text())[:4]))
    with pytest.raises(BundleError, match="4 trial records, but the manifest says n_trials=6"):
        open_bundle(bundle.path)


def test_truncated_bundle_detected(bundle):
    (bundle.path / "trials.json").write_text('[{"trial_id": 1')
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(bundle.path)
    (bundle.path / "trials.json").unlink()
    with pytest.raises(BundleError, match="written halfway"):
        open_bundle(bundle.path)


def _manifest(n=3):
    return Manifest(name="run", subject="2", tier="demo", n_trials=n, image_size=8)


def _images(i):
    return {k: synthetic_image(i, j, 8) for j, k in enumerate(("ground_truth", "vdvae", "final"))}


def test_halfway_run_is_never_complete_and_resumes(tmp_path):
    writer = BundleWriter(tmp_path, _manifest())
    writer.write_trial(0, trial_id=5, captions=["x"], images=_images(0))
    # killed here: the partial folder is refused, and not listed as a bundle
    with pytest.raises(BundleError, match="written halfway"):
        open_bundle(tmp_path / "run.partial")
    bundles, problems = find_bundles([tmp_path])
    assert bundles == [] and "written halfway" in problems[0]
    with pytest.raises(BundleError, match="2 of 3 trials not written yet"):
        writer.finalize()
    resumed = BundleWriter(tmp_path, _manifest())
    assert resumed.pending() == [1, 2]
    for i in resumed.pending():
        resumed.write_trial(i, trial_id=5 + i, captions=["x"], images=_images(i))
    bundle = resumed.finalize()
    assert [t.trial_id for t in bundle.trials] == [5, 6, 7]
    assert find_bundles([tmp_path])[0][0].name == "run"


def test_resume_with_other_settings_refused_unless_overwritten(tmp_path):
    first = BundleWriter(tmp_path, _manifest(3))
    first.write_trial(0, trial_id=5, captions=["x"], images=_images(0))
    first.close()
    with pytest.raises(BundleError, match=r"partial run with other settings is here \(n_trials: 3 -> 4\); rerun "
                                          "with the same settings to resume it, or pass --overwrite"):
        BundleWriter(tmp_path, _manifest(4))
    # --overwrite starts that partial run over (it failed the same way, though asked to replace)
    again = BundleWriter(tmp_path, _manifest(4), overwrite=True)
    assert again.pending() == [0, 1, 2, 3]


def test_existing_bundle_needs_overwrite(tmp_path):
    make_bundle(tmp_path, n_trials=2, size=8)
    manifest = Manifest(name="test-subj01", subject="1", tier="demo", n_trials=1, image_size=8)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        BundleWriter(tmp_path, manifest)
    writer = BundleWriter(tmp_path, manifest, overwrite=True)
    writer.write_trial(0, trial_id=1, captions=[], images=_images(0))
    assert writer.finalize().n_trials == 1


def test_bad_inputs_rejected(tmp_path):
    with pytest.raises(BundleError, match="unknown image kind"):
        Manifest(name="a", subject="1", tier="demo", n_trials=1, kinds=("ground_truth", "vdvae", "final", "x"))
    with pytest.raises(BundleError, match="a bundle needs"):
        Manifest(name="a", subject="1", tier="demo", n_trials=1, kinds=("ground_truth",))
    writer = BundleWriter(tmp_path, _manifest(1))
    with pytest.raises(ValueError, match="lacks kinds"):
        writer.write_trial(0, trial_id=1, captions=[], images={"final": synthetic_image(0, 0, 8)})
    bad = _images(0) | {"final": np.zeros((8, 8), dtype=np.uint8)}
    with pytest.raises(ValueError, match=r"expected a uint8 image of shape \(height, width, 3\)"):
        writer.write_trial(0, trial_id=1, captions=[], images=bad)


def test_find_bundles_orders_subjects_then_average(tmp_path):
    make_bundle(tmp_path, name="b-average", subject="average", n_trials=1, size=8)
    make_bundle(tmp_path, name="b-subj05", subject="5", n_trials=1, size=8)
    make_bundle(tmp_path, name="b-subj01", subject="1", n_trials=1, size=8)
    shutil.copytree(tmp_path / "b-subj01", tmp_path / "not-a-bundle-copy")
    (tmp_path / "not-a-bundle-copy" / "manifest.json").write_text("{}")
    bundles, problems = find_bundles([tmp_path, tmp_path / "missing"])
    assert [b.name for b in bundles] == ["b-subj01", "b-subj05", "b-average"]
    assert len(problems) == 1 and "not a braindiff bundle manifest" in problems[0]

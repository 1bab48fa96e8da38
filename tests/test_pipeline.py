"""Pipeline glue with stand-in stages: shapes, ablations, seeds independent of batching, reconstruct resume."""

from __future__ import annotations

import numpy as np
import pytest

from braindiff_app.bundles import open_bundle
from braindiff_app.pipeline import average_features, predict_features, trial_seeds
from braindiff_app.reconstruct import predict_test_features, reconstruct_subject
from braindiff_app.regression import load_regressors, subjects_with_regressors
from braindiff_app.stage2 import Stage2Settings
from tests._standins import (
    CLIP_DIM,
    N_LATENT,
    N_TOKENS_V,
    StandInImg2Img,
    fit_regressors,
    install_stand_ins,
    make_workspace,
    random_fmri,
    stand_in_pipeline,
)


@pytest.fixture
def stand_ins(monkeypatch):
    install_stand_ins(monkeypatch)


# -- pipeline ------------------------------------------------------------------------------------------------
def test_shapes_and_features(stand_ins):
    fmri = random_fmri(3)
    out = stand_in_pipeline()(fmri, seeds=trial_seeds([5, 6, 7]), rescale="none")
    assert out.final.shape == (3, 16, 16, 3) and out.final.dtype == np.uint8
    assert out.vdvae.shape == (3, 8, 8, 3) and out.ablations == {}
    assert out.features["clip_vision"].shape == (3, N_TOKENS_V, CLIP_DIM)
    np.testing.assert_array_equal(out.features["vdvae"], fit_regressors()["vdvae"].predict(fmri, rescale="none"))


def test_ablations_drop_the_right_input(stand_ins):
    out = stand_in_pipeline()(random_fmri(2), seeds=[1, 2], ablations=["no_vdvae", "no_text", "no_vision"])
    assert set(out.ablations) == {"no_vdvae", "no_text", "no_vision"}
    flags = [(c["init"], c["vision"], c["text"]) for c in StandInImg2Img.calls]
    assert flags == [(True, True, True), (False, True, True), (True, True, False), (True, False, True)]
    assert not np.array_equal(out.ablations["no_text"], out.final)


def test_only_vdvae_skips_stage_two(stand_ins):
    out = stand_in_pipeline()(random_fmri(2), seeds=[1, 2], final=False)
    assert out.final is None and out.vdvae.shape == (2, 8, 8, 3) and StandInImg2Img.calls == []


def test_results_do_not_depend_on_batching(stand_ins):
    pipe = stand_in_pipeline()
    features = predict_features(fit_regressors(), random_fmri(5), "transductive")
    seeds = trial_seeds([10, 11, 12, 13, 14], seed=3)
    whole = pipe(features=features, seeds=seeds, ablations=["no_vdvae"], batch_size=5)
    for order in ([4, 0, 2], [1, 3]):
        part = pipe(features={k: v[order] for k, v in features.items()}, seeds=seeds[order], batch_size=2,
                    ablations=["no_vdvae"])
        np.testing.assert_array_equal(part.final, whole.final[order])
        np.testing.assert_array_equal(part.vdvae, whole.vdvae[order])
        np.testing.assert_array_equal(part.ablations["no_vdvae"], whole.ablations["no_vdvae"][order])


def test_trial_seeds_are_per_trial_and_per_run():
    a = trial_seeds([3, 1, 2], seed=0)
    np.testing.assert_array_equal(trial_seeds([2, 3], seed=0), a[[2, 0]])
    assert len(set(a.tolist())) == 3 and (a >= 0).all() and (a < 2**31).all()
    assert not np.array_equal(trial_seeds([3, 1, 2], seed=1), a)
    with pytest.raises(ValueError, match="non-negative"):
        trial_seeds([-1])


def test_check_inputs_errors(stand_ins):
    pipe = stand_in_pipeline()
    with pytest.raises(ValueError, match="pass exactly one of them"):
        pipe(seeds=[0])
    with pytest.raises(ValueError, match=r"seeds: expected one seed per image, shape \(2,\)"):
        pipe(random_fmri(2), seeds=[0])
    with pytest.raises(ValueError, match="strength: expected a value in"):
        pipe(random_fmri(1), seeds=[0], strength=1.5)
    with pytest.raises(ValueError, match="ablations: expected one of"):
        pipe(random_fmri(1), seeds=[0], ablations=["no_brain"])
    with pytest.raises(ValueError, match="rescale: expected one of"):
        pipe(random_fmri(1), seeds=[0], rescale="zscore")
    with pytest.raises(ValueError, match="has no regressors"):
        stand_in_pipeline(regressors={})(random_fmri(1), seeds=[0])
    with pytest.raises(ValueError, match="features: expected keys"):
        pipe(features={"vdvae": np.zeros((1, N_LATENT))}, seeds=[0])
    assert StandInImg2Img.calls == []


def test_average_features_is_the_mean():
    a = {"x": np.ones((2, 3)), "y": np.zeros((2, 1))}
    b = {"x": 3 * np.ones((2, 3)), "y": np.ones((2, 1))}
    avg = average_features([a, b])
    np.testing.assert_array_equal(avg["x"], 2 * np.ones((2, 3)))
    np.testing.assert_array_equal(avg["y"], 0.5 * np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"features 'x' have shape \(3, 3\), the first subject's \(2, 3\)"):
        average_features([a, {"x": np.ones((3, 3)), "y": np.zeros((2, 1))}])
    with pytest.raises(ValueError, match="at least one subject"):
        average_features([])


# -- reconstruct: bundle, resume, average ---------------------------------------------------------------------
def test_reconstruct_writes_bundle_and_resumes(tmp_path, monkeypatch, stand_ins):
    settings = make_workspace(tmp_path)
    reference = reconstruct_subject(settings, 1, ablations=["no_text"], out=tmp_path / "ref",
                                    pipeline=stand_in_pipeline(), batch_size=2, progress=False)
    # A run killed during its second batch (each batch makes 2 stage-2 calls: final, no_text).
    StandInImg2Img.calls.clear()
    monkeypatch.setattr(StandInImg2Img, "fail_after", 3)
    with pytest.raises(KeyboardInterrupt):
        reconstruct_subject(settings, 1, ablations=["no_text"], pipeline=stand_in_pipeline(), batch_size=2,
                            progress=False)
    partial = settings.home / "bundles" / "demo-subj01.partial"
    assert sorted(p.name for p in (partial / "trials").iterdir()) == ["00000.json", "00001.json"]
    monkeypatch.setattr(StandInImg2Img, "fail_after", None)
    StandInImg2Img.calls.clear()
    path = reconstruct_subject(settings, 1, ablations=["no_text"], pipeline=stand_in_pipeline(), batch_size=2,
                               progress=False)
    assert sum(c["n"] for c in StandInImg2Img.calls) == 2 * 3  # only the 3 pending trials, 2 kinds each
    bundle, ref = open_bundle(path), open_bundle(reference)
    assert bundle.name == "demo-subj01" and bundle.kinds == ("ground_truth", "vdvae", "final", "no_text")
    assert [t.trial_id for t in bundle.trials] == [100, 101, 102, 103, 104]
    assert bundle.manifest.settings["strength"] == 0.75 and bundle.manifest.settings["alphas"]["1"]["vdvae"] == 1.0
    for i in range(5):
        for kind in bundle.kinds:
            np.testing.assert_array_equal(bundle.image(i, kind), ref.image(i, kind))
    # The same run again: the bundle is up to date and nothing is computed.
    StandInImg2Img.calls.clear()
    assert reconstruct_subject(settings, 1, ablations=["no_text"], pipeline=stand_in_pipeline(), batch_size=2,
                               progress=False) == path
    assert StandInImg2Img.calls == []
    # Other settings: refused, naming what changed, unless overwrite.
    with pytest.raises(FileExistsError, match=r"settings.num_inference_steps: 50 -> 20.*--overwrite"):
        reconstruct_subject(settings, 1, ablations=["no_text"], pipeline=stand_in_pipeline(), progress=False,
                            stage2=Stage2Settings(num_inference_steps=20))
    path = reconstruct_subject(settings, 1, ablations=["no_text"], pipeline=stand_in_pipeline(), progress=False,
                               stage2=Stage2Settings(num_inference_steps=20), overwrite=True)
    assert open_bundle(path).manifest.settings["num_inference_steps"] == 20


def test_average_matches_subjects_by_nsd_id(tmp_path, monkeypatch, stand_ins):
    settings = make_workspace(tmp_path)
    assert subjects_with_regressors(settings) == ["1", "2"]
    test, features, subjects = predict_test_features(settings, "average", rescale="none")
    assert subjects == ["1", "2"] and test.trial_ids.tolist() == [100, 101, 102, 103]
    one, two = (predict_features(load_regressors(settings, s), np.load(settings.subject_dir("prepared", s) /
                                                                       "fmri_test.npy"), "none") for s in (1, 2))
    # subject 2's rows are ids [103, 102, 101, 100]: reversed to match subject 1's order.
    np.testing.assert_allclose(features["clip_text"], (one["clip_text"][:4] + two["clip_text"][::-1]) / 2,
                               rtol=1e-5)
    path = reconstruct_subject(settings, "average", out=tmp_path / "b", pipeline=stand_in_pipeline({}), limit=2,
                               progress=False)
    bundle = open_bundle(path)
    assert bundle.name == "demo-average" and bundle.subject == "average" and bundle.n_trials == 2
    assert bundle.manifest.settings["subjects"] == ["1", "2"]

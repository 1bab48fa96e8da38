"""The encoding model: its fit against scikit-learn, features, storage and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV

from braindiff_app.regression import encoder as E
from braindiff_app.regression.ridge import LowRankWeights


def _problem(n=80, p=12, v=30, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(2.0, 3.0, (n + n_test, p))
    B = rng.normal(size=(p, v))
    fmri = 300 * (X @ B / np.sqrt(p) + rng.normal(0, 1.0, (n + n_test, v)) + 5.0)
    return X[:n], fmri[:n], X[n:], fmri[n:]


def _reference(Xtr, ftr, Xte):
    """Independent formula: z-score features (ddof=0) and betas/300 (ddof=1), then sklearn's Ridge."""
    mu, sd = Xtr.mean(0), Xtr.std(0)
    f = ftr / 300
    fm, fs = f.mean(0), f.std(0, ddof=1)
    return (Xtr - mu) / sd, (f - fm) / fs, (Xte - mu) / sd


def test_fit_equals_sklearn_ridge():
    Xtr, ftr, Xte, _ = _problem()
    A, Y, Ate = _reference(Xtr, ftr, Xte)
    ref = Ridge(alpha=30.0).fit(A, Y)
    model = E.fit_encoder(Xtr, ftr, feature_set="vdvae", alphas=30.0, rank=None)
    np.testing.assert_allclose(model.weights, ref.coef_.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(Xte), ref.predict(Ate), rtol=1e-4, atol=1e-4)
    assert model.predict(Xte).shape == (len(Xte), ftr.shape[1])


def test_per_voxel_alpha_equals_sklearn_ridgecv():
    Xtr, ftr, Xte, _ = _problem(seed=1)
    ftr[:, :10] += np.random.default_rng(2).normal(0, 3000, (len(ftr), 10))  # noisy voxels want larger alphas
    A, Y, Ate = _reference(Xtr, ftr, Xte)
    alphas = np.logspace(-1, 4, 8)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(A, Y)
    model = E.fit_encoder(Xtr, ftr, feature_set="vdvae", alphas=alphas, rank=None)
    np.testing.assert_array_equal(model.alpha, ref.alpha_)
    assert len(set(model.alpha)) > 1
    np.testing.assert_allclose(model.predict(Xte), ref.predict(Ate), rtol=1e-3, atol=1e-3)


def test_low_rank_is_the_truncated_svd_of_the_dense_weights():
    rng = np.random.default_rng(4)
    Xtr = rng.normal(size=(80, 20))
    B = rng.normal(size=(20, 3)) @ rng.normal(size=(3, 40))  # planted rank 3, so the randomized SVD is exact
    ftr = 300 * (Xtr @ B + rng.normal(0, 0.1, (80, 40)))
    dense = E.fit_encoder(Xtr, ftr, feature_set="vdvae", alphas=10.0, rank=None)
    low = E.fit_encoder(Xtr, ftr, feature_set="vdvae", alphas=10.0, rank=3)
    assert isinstance(low.weights, LowRankWeights) and low.weights.rank == 3
    U, S, Vt = np.linalg.svd(dense.weights.astype(np.float64), full_matrices=False)
    truncated = (U[:, :3] * S[:3]) @ Vt[:3]
    np.testing.assert_allclose(low.weights.left @ low.weights.right, truncated, atol=1e-3 * np.abs(truncated).max())


def test_features_of_each_set():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(3, 257, 8)).astype(np.float32)
    latents = rng.normal(size=(3, 50)).astype(np.float32)
    grid = E.encoder_features("clip_grid4", tokens)
    manual = [tokens[:, 1:].reshape(3, 16, 16, 8)[:, 4 * i:4 * i + 4, 4 * j:4 * j + 4].mean((1, 2))
              for i in range(4) for j in range(4)]
    np.testing.assert_allclose(grid, np.concatenate([tokens[:, 0], *manual], 1), rtol=1e-5, atol=1e-6)
    assert E.encoder_features("clip_cls", tokens).shape == (3, 8)
    np.testing.assert_allclose(E.encoder_features("clip_mean", tokens), tokens[:, 1:].mean(1), rtol=1e-5)
    both = E.encoder_features("clip_grid4+vdvae", tokens, latents)
    assert both.shape == (3, 17 * 8 + 50)
    np.testing.assert_array_equal(both[:, -50:], latents)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"feature_set": "pixels"}, "feature_set: expected one of"),
    ({"feature_set": "clip_grid4"}, "clip_vision: feature set 'clip_grid4' needs"),
    ({"feature_set": "vdvae", "clip_vision": np.zeros((2, 257, 4))}, "vdvae: feature set 'vdvae' needs"),
    ({"feature_set": "clip_grid4", "clip_vision": np.zeros((2, 50, 4))}, "1 \\+ side\\^2 tokens"),
    ({"feature_set": "clip_cls", "clip_vision": np.zeros((2, 4))}, "expected shape \\(n_images, n_tokens"),
    ({"feature_set": "clip_grid4+vdvae", "clip_vision": np.zeros((2, 257, 4)), "vdvae": np.zeros((3, 5))},
     "same number of images"),
    ({"feature_set": "vdvae", "vdvae": np.full((2, 5), np.nan)}, "NaN"),
])
def test_features_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        E.encoder_features(**kwargs)


def test_fit_and_predict_bad_input():
    Xtr, ftr, _, _ = _problem()
    with pytest.raises(ValueError, match="same rows"):
        E.fit_encoder(Xtr[:-1], ftr)
    bad = ftr.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        E.fit_encoder(Xtr, bad)
    model = E.fit_encoder(Xtr, ftr, feature_set="vdvae", rank=2)
    with pytest.raises(ValueError, match=r"expected shape \(n_images, 12\)"):
        model.predict(np.zeros((2, 5)))
    fitted = []  # a rank out of range is refused before the ridge fit, not after it
    real_fit = E.fit_ridge
    E.fit_ridge = lambda *a, **k: fitted.append(1) or real_fit(*a, **k)
    try:
        with pytest.raises(ValueError, match=r"rank: expected 1 <= rank <= 12 \(the smaller of 30 voxels and 12 "
                                             r"features\)"):
            E.fit_encoder(Xtr, ftr, feature_set="vdvae", rank=0)
    finally:
        E.fit_ridge = real_fit
    assert fitted == []


def test_pearson_per_voxel_matches_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    b[:, 0] += 2 * a[:, 0]
    expected = [np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(5)]
    np.testing.assert_allclose(E.pearson_per_voxel(a, b), expected, rtol=1e-10)
    assert E.pearson_per_voxel(np.ones((4, 2)), rng.normal(size=(4, 2))).tolist() == [0.0, 0.0]


def _prepared(tmp_path, n=60, n_test=15, v=25):
    Xtr, ftr, Xte, fte = _problem(n=n, p=10, v=v, n_test=n_test)
    prepared, features = tmp_path / "prepared", tmp_path / "features"
    prepared.mkdir()
    features.mkdir()
    np.save(prepared / "fmri_train.npy", ftr.astype(np.float32))
    np.save(prepared / "fmri_test.npy", fte.astype(np.float32))
    (prepared / "meta.json").write_text(json.dumps({"nsd_ids_test": list(range(100, 100 + n_test))}))
    np.save(features / "vdvae_train.npy", Xtr.astype(np.float32))
    np.save(features / "vdvae_test.npy", Xte.astype(np.float32))
    return prepared, features, fte


def test_fit_subject_evaluates_and_round_trips(tmp_path):
    prepared, features, fte = _prepared(tmp_path)
    truth = (fte / 300 - 5.0) + np.random.default_rng(9).normal(0, 0.01, fte.shape)
    out = tmp_path / "enc" / "encoder.safetensors"
    report = E.fit_subject_encoder(prepared, features, out, feature_set="vdvae", rank=4, true_test=truth)
    assert report["median_r"] > 0.5 and report["median_ceiling"] > 0.99
    assert E.load_encoder(out).evaluation["test_true"].shape == fte.shape
    model = E.load_encoder(out)
    assert [p.name for p in out.parent.iterdir()] == ["encoder.safetensors"]  # no temporary left
    assert model.feature_set == "vdvae" and model.n_voxels == 25 and model.weights.rank == 4
    Xte = np.load(features / "vdvae_test.npy")
    measured = (fte / 300 - model.fmri_mean) / model.fmri_scale
    expected_r = [np.corrcoef(model.predict(Xte)[:, i], measured[:, i])[0, 1] for i in range(25)]
    np.testing.assert_allclose(model.evaluation["accuracy"], expected_r, atol=1e-4)
    assert model.evaluation["test_nsd_ids"].tolist() == list(range(100, 115))
    np.testing.assert_allclose(model.to_betas(measured), fte, rtol=1e-4)
    assert model.metadata["rank"] == "4"


def test_load_refuses_damaged_files(tmp_path):
    from braindiff_app.regression.storage import read_safetensors, write_safetensors

    prepared, features, _ = _prepared(tmp_path)
    out = tmp_path / "encoder.safetensors"
    E.fit_subject_encoder(prepared, features, out, feature_set="vdvae", rank=3)
    tensors, meta = read_safetensors(out)
    tensors = {k: np.array(v) for k, v in tensors.items()}
    with pytest.raises(FileNotFoundError, match="fit-encoder"):
        E.load_encoder(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    write_safetensors(bad, tensors, {**meta, "format": "braindiff-ridge"})
    with pytest.raises(ValueError, match="not a braindiff encoder"):
        E.load_encoder(bad)
    write_safetensors(bad, {**tensors, "intercept": np.full_like(tensors["intercept"], np.nan)}, meta)
    with pytest.raises(ValueError, match="intercept holds NaN"):
        E.load_encoder(bad)
    write_safetensors(bad, {**tensors, "alpha": tensors["alpha"][:-1]}, meta)
    with pytest.raises(ValueError, match="alpha: expected shape"):
        E.load_encoder(bad)
    write_safetensors(bad, {k: v for k, v in tensors.items() if k != "weights_left"}, meta)
    with pytest.raises(ValueError, match="missing tensor"):
        E.load_encoder(bad)
    bad.write_bytes(out.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated or damaged"):
        E.load_encoder(bad)


def test_fit_subject_names_missing_files(tmp_path):
    prepared, features, _ = _prepared(tmp_path)
    (features / "vdvae_test.npy").unlink()
    with pytest.raises(FileNotFoundError, match="vdvae_test.npy: missing; extract the features first"):
        E.fit_subject_encoder(prepared, features, tmp_path / "e.safetensors", feature_set="vdvae")
    with pytest.raises(FileNotFoundError, match="clip_vision_train.npy: missing"):
        E.fit_subject_encoder(prepared, features, tmp_path / "e.safetensors", feature_set="clip_cls")


def test_noise_ceiling_is_the_nsd_manuals_formula():
    ncsnr = np.random.default_rng(3).uniform(0, 2, 50)
    # NSD data manual: NC = 100 * ncsnr^2 / (ncsnr^2 + 1/n) for n trials averaged ...
    np.testing.assert_allclose(E.noise_ceiling(ncsnr, 3), 100 * ncsnr**2 / (ncsnr**2 + 1 / 3))
    np.testing.assert_allclose(E.noise_ceiling(ncsnr, [3] * 7), 100 * ncsnr**2 / (ncsnr**2 + 1 / 3))
    # ... and with A, B, C images of 3, 2, 1 trials: (A/3 + B/2 + C/1) / (A + B + C) in place of 1/n
    A, B, C = 5, 2, 1
    mixed = (A / 3 + B / 2 + C / 1) / (A + B + C)
    np.testing.assert_allclose(E.noise_ceiling(ncsnr, [3] * A + [2] * B + [1] * C),
                               100 * ncsnr**2 / (ncsnr**2 + mixed))
    assert E.noise_ceiling(np.array([0.0]), 3)[0] == 0.0
    with pytest.raises(ValueError, match="repetitions"):
        E.noise_ceiling(ncsnr, [3, 0])
    with pytest.raises(ValueError, match="ncsnr"):
        E.noise_ceiling(np.array([np.nan]), 3)


def test_normalized_accuracy_is_r2_over_the_noise_ceiling(tmp_path):
    prepared, features, _ = _prepared(tmp_path, v=25)
    ncsnr = np.random.default_rng(4).uniform(0.3, 1.5, 25).astype(np.float32)
    ncsnr[:3] = [0.0, 0.05, 0.2]  # NC 0%, 0.75%, 10.7%: the first two fall below the 1% floor
    np.save(prepared / "ncsnr.npy", ncsnr)
    meta = json.loads((prepared / "meta.json").read_text())
    (prepared / "meta.json").write_text(json.dumps({**meta, "repetitions_test": [3] * 15}))
    out = tmp_path / "encoder.safetensors"
    report = E.fit_subject_encoder(prepared, features, out, feature_set="vdvae", rank=4)
    model = E.load_encoder(out)  # NaN (voxels below the floor) loads
    nc = 100 * ncsnr.astype(np.float64)**2 / (ncsnr.astype(np.float64)**2 + 1 / 3)
    with np.errstate(divide="ignore"):
        r = model.evaluation["accuracy"].astype(np.float64)
        expected = np.where(nc >= 1.0, np.where(r > 0, r, 0.0)**2 / (nc / 100), np.nan)  # negative r: explains 0
    assert np.isnan(expected[:2]).all() and np.isfinite(expected[2:]).all()
    np.testing.assert_allclose(model.evaluation["noise_ceiling"], nc, rtol=1e-6)
    np.testing.assert_allclose(model.evaluation["normalized_accuracy"], expected, rtol=1e-5)
    assert report["median_normalized"] == pytest.approx(np.nanmedian(expected), rel=1e-5)
    from braindiff_app.regression.storage import read_safetensors, write_safetensors

    tensors, meta = read_safetensors(out)
    tensors = {k: np.array(v) for k, v in tensors.items()}
    for key, value in (("eval_noise_ceiling", np.nan), ("eval_normalized_accuracy", np.inf)):
        damaged = {**tensors, key: np.full_like(tensors[key], value)}  # only NaN in normalized_accuracy is valid
        write_safetensors(tmp_path / "bad.safetensors", damaged, meta)
        with pytest.raises(ValueError, match=f"evaluation tensor '{key[5:]}'"):
            E.load_encoder(tmp_path / "bad.safetensors")
    # without ncsnr.npy: raw r only, as before
    (prepared / "ncsnr.npy").unlink()
    report = E.fit_subject_encoder(prepared, features, out, feature_set="vdvae", rank=4)
    assert "median_normalized" not in report and "normalized_accuracy" not in E.load_encoder(out).evaluation


def test_normalized_accuracy_bad_inputs_are_named(tmp_path):
    prepared, features, _ = _prepared(tmp_path, v=25)
    np.save(prepared / "ncsnr.npy", np.ones(24, np.float32))
    with pytest.raises(ValueError, match=r"ncsnr\.npy: expected finite values >= 0 of shape \(25,\)"):
        E.fit_subject_encoder(prepared, features, tmp_path / "e.safetensors", feature_set="vdvae", rank=2)
    np.save(prepared / "ncsnr.npy", np.ones(25, np.float32))
    with pytest.raises(ValueError, match=r"meta\.json: no repetitions_test"):
        E.fit_subject_encoder(prepared, features, tmp_path / "e.safetensors", feature_set="vdvae", rank=2)
    assert not (tmp_path / "e.safetensors").exists()

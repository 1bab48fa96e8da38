"""Ridge: predictions equal scikit-learn's (shared and per-token fits), CV, preprocessing, rescale modes."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV

from braindiff_app.regression import ridge as R

BACKENDS = ["numpy", "torch"]


def _data(n=60, p=90, m=12, n_test=9, seed=0):
    rng = np.random.default_rng(seed)
    fmri = rng.normal(0, 300, (n + n_test, p)).astype(np.float32) + rng.normal(0, 100, p).astype(np.float32)
    B = rng.normal(size=(p, m)).astype(np.float32)
    Y = (fmri / 300) @ B / np.sqrt(p) + rng.normal(0, 0.5, (n + n_test, m)).astype(np.float32)
    return fmri[:n], Y[:n], fmri[n:]


def _reference_X(train, test):
    """The reference code's preprocessing."""
    train, test = train / 300, test / 300
    mean, scale = train.mean(0), train.std(0, ddof=1)
    return (train - mean) / scale, (test - mean) / scale


def assert_rel_close(ours, ref, tol=1e-4):
    err = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    assert err < tol, f"relative error {err:.2e} >= {tol}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(60, 90), (120, 40)], ids=["kernel", "primal"])
def test_predictions_equal_sklearn(backend, shape):
    n, p = shape
    train, Y, test = _data(n=n, p=p)
    Xtr, Xte = _reference_X(train.astype(np.float64), test.astype(np.float64))
    ref = Ridge(alpha=25.0).fit(Xtr, Y.astype(np.float64)).predict(Xte)
    reg = R.RidgeRegressor(25.0, backend=backend, n_targets_batch=5).fit(train, Y)
    pred = reg.predict(test)
    assert pred.shape == (len(test), Y.shape[1]) and pred.dtype == np.float32
    assert_rel_close(pred, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_token_equals_one_sklearn_fit_per_token(backend):
    n_tokens, dim = 4, 6
    train, Y, test = _data(m=n_tokens * dim)
    Y3 = Y.reshape(len(Y), n_tokens, dim)
    Xtr, Xte = _reference_X(train.astype(np.float64), test.astype(np.float64))
    # The reference: one Ridge per token, then its transductive rescaling per token.
    ref = np.empty((len(test), n_tokens, dim))
    for t in range(n_tokens):
        p = Ridge(alpha=40.0).fit(Xtr, Y3[:, t]).predict(Xte)
        p = (p - p.mean(0)) / p.std(0)
        ref[:, t] = p * Y3[:, t].std(0) + Y3[:, t].mean(0)
    reg = R.RidgeRegressor(40.0, backend=backend, n_targets_batch=7).fit(train, Y3)
    pred = reg.predict(test, rescale="transductive")
    assert pred.shape == (len(test), n_tokens, dim)
    assert_rel_close(pred, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_alpha_per_target_matches_sklearn_ridgecv(backend):
    train, Y, test = _data(n=50, p=70, m=10, seed=3)
    Y[:, :5] *= 0.05  # some targets are mostly noise: they want a larger alpha
    Y[:, :5] += np.random.default_rng(1).normal(size=(50, 5)).astype(np.float32)
    alphas = np.logspace(-1, 4, 8)
    Xtr, Xte = _reference_X(train.astype(np.float64), test.astype(np.float64))
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(Xtr, Y.astype(np.float64))
    reg = R.RidgeRegressor(alphas, backend=backend).fit(train, Y)
    np.testing.assert_array_equal(reg.alpha_, ref.alpha_)
    assert len(set(reg.alpha_)) > 1
    assert_rel_close(reg.predict(test), ref.predict(Xte))


def test_fit_ridge_batches_and_stats_rows_agree():
    train, Y, _ = _data()
    X = R.preprocess_fmri(train, *R.zscore_stats(train))
    whole = R.fit_ridge(X, Y, 10.0)
    batched = R.fit_ridge(X, Y, 10.0, n_targets_batch=5, X_stats=X[::2])
    np.testing.assert_allclose(batched.weights, whole.weights, rtol=1e-5, atol=1e-6)
    pred_train = X @ whole.weights + whole.intercept
    np.testing.assert_allclose(whole.pred_std, pred_train.std(0), rtol=1e-4)
    np.testing.assert_allclose(batched.pred_std, pred_train[::2].std(0), rtol=1e-4)
    np.testing.assert_allclose(whole.intercept, Y.mean(0), rtol=1e-4, atol=1e-5)


def test_rescale_modes():
    train, Y, test = _data(m=8)
    reg = R.RidgeRegressor(10.0).fit(train, Y.reshape(-1, 2, 4))
    raw = reg.predict(test).reshape(len(test), -1)
    # transductive: each target has the training features' mean/std across the given rows
    trans = reg.predict(test, rescale="transductive").reshape(len(test), -1)
    np.testing.assert_allclose(trans.mean(0), Y.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(trans.std(0), Y.std(0), rtol=1e-4)
    # train: row by row, independent of the other rows
    one = reg.predict(test[:1], rescale="train").reshape(1, -1)
    allrows = reg.predict(test, rescale="train").reshape(len(test), -1)
    np.testing.assert_allclose(one[0], allrows[0], rtol=1e-5)
    expected = (raw - reg.pred_mean_) / reg.pred_std_ * reg.target_std_ + reg.target_mean_
    np.testing.assert_allclose(allrows, expected, rtol=1e-5, atol=1e-6)
    # norm: each token of a single pattern gets the training predictions' mean norm of that token
    normed = reg.predict(test[0], rescale="norm")
    assert normed.shape == (1, 2, 4)
    np.testing.assert_allclose(np.linalg.norm(normed[0], axis=1), reg.pred_norm_, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 2 rows.*rescale='train' or 'norm'"):
        reg.predict(test[:1], rescale="transductive")
    with pytest.raises(ValueError, match="rescale: expected one of"):
        reg.predict(test, rescale="zscore")


def test_errors_and_constant_voxel_warning():
    train, Y, test = _data()
    with pytest.raises(ValueError, match="not fitted"):
        R.RidgeRegressor(1.0).predict(test)
    with pytest.raises(ValueError, match=r"targets: expected shape \(n_trials=60"):
        R.RidgeRegressor(1.0).fit(train, Y[:10])
    with pytest.raises(ValueError, match="alpha: expected positive"):
        R.RidgeRegressor(-1.0).fit(train, Y)
    reg = R.RidgeRegressor(1.0).fit(train, Y)
    with pytest.raises(ValueError, match=r"fmri: expected shape \(n_trials, 90\)"):
        reg.predict(test[:, :10])
    train = train.copy()
    train[:, 3] = 7.0
    with pytest.warns(RuntimeWarning, match="1 voxel"):
        reg = R.RidgeRegressor(1.0).fit(train, Y)
    assert np.isfinite(reg.predict(test)).all()


def test_fit_leaves_inputs_unchanged():
    train, Y, _ = _data()
    before_Y, before_train = Y.copy(), train.copy()
    R.RidgeRegressor(10.0, n_targets_batch=4).fit(train, Y)
    np.testing.assert_array_equal(Y, before_Y)
    np.testing.assert_array_equal(train, before_train)


def test_stats_rows_subset_are_evenly_spaced_training_rows():
    train, Y, _ = _data()
    reg = R.RidgeRegressor(10.0, n_stats_rows=20).fit(train, Y)
    rows = np.linspace(0, len(train) - 1, 20).round().astype(int)
    pred = reg.predict(train[rows])
    np.testing.assert_allclose(reg.pred_mean_, pred.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(reg.pred_std_, pred.std(0), rtol=1e-4)
    assert not np.allclose(reg.pred_std_, reg.predict(train).std(0), rtol=1e-3)


def test_weights_written_into_a_given_memmap(tmp_path):
    train, Y, test = _data()
    out = np.lib.format.open_memmap(tmp_path / "w.npy", mode="w+", dtype=np.float32, shape=(90, 12))
    reg = R.RidgeRegressor(10.0).fit(train, Y, weights_out=out)
    assert reg.weights_ is out
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), R.RidgeRegressor(10.0).fit(train, Y).weights_)
    with pytest.raises(ValueError, match=r"out: expected a float32 array of shape \(90, 12\)"):
        R.RidgeRegressor(10.0).fit(train, Y, weights_out=np.empty((90, 11), np.float32))


def test_predict_standardized_is_predict_after_preprocessing():
    train, Y, test = _data()
    reg = R.RidgeRegressor(10.0).fit(train, Y.reshape(len(Y), 3, 4))
    X = R.preprocess_fmri(test, reg.fmri_mean_, reg.fmri_scale_)
    for rescale in R.RESCALE_MODES:
        np.testing.assert_array_equal(reg.predict_standardized(X, rescale=rescale), reg.predict(test, rescale=rescale))
    np.testing.assert_array_equal(reg.predict_standardized(np.zeros(X.shape[1]))[0].ravel(), reg.intercept_)
    assert reg.typical_deviation == pytest.approx(np.sqrt(np.sum(Y.astype(np.float64).std(0) ** 2)), rel=1e-6)
    with pytest.raises(ValueError, match=r"X: expected shape \(n_trials, 90\)"):
        reg.predict_standardized(X[:, :5])
    with pytest.raises(ValueError, match="not fitted"):
        R.RidgeRegressor().predict_standardized(X)

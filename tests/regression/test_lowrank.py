"""to_low_rank against the exact truncated SVD (numpy) and scikit-learn's randomized_svd."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.extmath import randomized_svd

from braindiff_app.regression import RidgeRegressor, to_low_rank


def _regressor(p: int = 80, m: int = 600, seed: int = 0) -> RidgeRegressor:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((50, p)).astype(np.float32)
    Y = X @ (rng.standard_normal((p, 8)) * np.arange(1, 9.0) ** -1) @ rng.standard_normal((8, m))
    return RidgeRegressor(10.0).fit(X, (Y + 0.3 * rng.standard_normal(Y.shape)).astype(np.float32))


@pytest.mark.parametrize("n_targets_batch", [None, 128])
def test_error_is_that_of_the_truncated_svd(n_targets_batch):
    reg = _regressor()
    W = np.asarray(reg.weights_, dtype=np.float64)
    rank = 6
    low = to_low_rank(reg, rank, n_targets_batch=n_targets_batch).weights_
    error = np.linalg.norm(W - low.left.astype(np.float64) @ low.right)
    s = np.linalg.svd(W, compute_uv=False)
    optimal = np.sqrt((s[rank:] ** 2).sum())
    assert optimal <= error <= optimal * (1 + 1e-3)
    np.testing.assert_allclose(low.left.T @ low.left, np.eye(rank), atol=1e-5)  # left orthonormal
    # at least as close as scikit-learn's randomized SVD with its default settings
    U, S, Vt = randomized_svd(W, rank, random_state=0)
    assert error <= np.linalg.norm(W - (U * S) @ Vt) * (1 + 1e-3)

"""2-way identification and correlation distance on plain feature arrays."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import correlation

from braindiff_app.evaluation import correlation_distance, n_way_identification, pearson_matrix, two_way_identification


def _reference_loop(gt: np.ndarray, rec: np.ndarray) -> np.ndarray:
    """The definition, written out: for each j, the fraction of i != j with r(gt_i, rec_j) < r(gt_j, rec_j)."""
    n = len(gt)
    r = np.corrcoef(gt, rec)[:n, n:]
    return np.array([np.mean([r[i, j] < r[j, j] for i in range(n) if i != j]) for j in range(n)])


def test_pearson_matrix_matches_numpy_in_chunks():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3, 7)), rng.normal(size=(4, 21))
    r = pearson_matrix(a, b, chunk=4)
    assert r.shape == (5, 4)
    np.testing.assert_allclose(r, np.corrcoef(a.reshape(5, -1), b)[:5, 5:], atol=1e-12)


def test_identical_features_identify_perfectly():
    feats = np.random.default_rng(1).normal(size=(12, 50)).astype(np.float32)
    np.testing.assert_array_equal(two_way_identification(feats, feats), np.ones(12, dtype=np.float32))
    np.testing.assert_allclose(correlation_distance(feats, feats), 0.0, atol=1e-6)


def test_unrelated_features_are_near_chance():
    rng = np.random.default_rng(2)
    scores = two_way_identification(rng.normal(size=(400, 64)), rng.normal(size=(400, 64)))
    assert scores.shape == (400,)
    assert abs(scores.mean() - 0.5) < 0.03


def test_identification_matches_definition():
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(9, 30))
    rec = gt + rng.normal(scale=1.5, size=gt.shape)
    scores = two_way_identification(gt, rec)
    np.testing.assert_allclose(scores, _reference_loop(gt, rec), atol=1e-7)
    assert 0 < scores.min() and scores.mean() > 0.5


def test_correlation_distance_matches_scipy():
    rng = np.random.default_rng(4)
    gt, rec = rng.normal(size=(6, 40)), rng.normal(size=(6, 40))
    expected = [correlation(g, r) for g, r in zip(gt, rec, strict=True)]
    np.testing.assert_allclose(correlation_distance(gt, rec), expected, rtol=1e-5)


def test_identification_errors():
    with pytest.raises(ValueError, match="at least 2 trials"):
        two_way_identification(np.ones((1, 5)), np.ones((1, 5)))
    with pytest.raises(ValueError, match=r"reconstruction_features: expected shape \(3, 5\)"):
        two_way_identification(np.ones((3, 5)), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"b: expected 5 features per row"):
        pearson_matrix(np.ones((3, 5)), np.ones((3, 4)))


def test_perfect_reversed_and_chance():  # moved from tests/models/test_demo_train.py (the demo's own copy is gone)
    truth = np.random.default_rng(0).standard_normal((20, 50))
    assert two_way_identification(truth, truth).tolist() == [1.0] * 20
    assert two_way_identification(truth, -truth).tolist() == [0.0] * 20
    noise = np.random.default_rng(1).standard_normal((200, 50))
    assert two_way_identification(noise, np.random.default_rng(2).standard_normal((200, 50))).mean() == \
        pytest.approx(0.5, abs=0.05)


def test_demo_trainer_uses_this_function():
    import braindiff_app.demo.train_vd as train_vd

    assert train_vd.two_way_identification is two_way_identification
    assert "two_way_identification" not in train_vd.__all__


def _quiz_by_enumeration(gt: np.ndarray, rec: np.ndarray, ways: int) -> np.ndarray:
    """The quiz written out: every set of ways - 1 distractors, reconstruction j right when its own image wins."""
    n = len(gt)
    r = np.corrcoef(gt, rec)[:n, n:]
    out = []
    for j in range(n):
        others = [i for i in range(n) if i != j]
        draws = list(itertools.combinations(others, ways - 1))
        out.append(np.mean([all(r[i, j] < r[j, j] for i in draw) for draw in draws]))
    return np.array(out)


@pytest.mark.parametrize("ways", [2, 3, 4])
def test_n_way_identification_is_the_quiz_over_every_draw(ways):
    rng = np.random.default_rng(5)
    gt = rng.normal(size=(9, 30))
    rec = gt + rng.normal(scale=1.2, size=gt.shape)
    scores = n_way_identification(gt, rec, ways)
    np.testing.assert_allclose(scores, _quiz_by_enumeration(gt, rec, ways), atol=1e-6)
    if ways == 2:
        np.testing.assert_array_equal(scores, two_way_identification(gt, rec))


def test_n_way_chance_and_perfect():
    rng = np.random.default_rng(6)
    noise = n_way_identification(rng.normal(size=(300, 40)), rng.normal(size=(300, 40)), 4)
    assert noise.mean() == pytest.approx(0.25, abs=0.04)  # chance is 1 / ways
    truth = rng.normal(size=(10, 20))
    assert n_way_identification(truth, truth, 4).tolist() == [1.0] * 10
    assert n_way_identification(truth, -truth, 4).tolist() == [0.0] * 10


def test_n_way_errors():
    with pytest.raises(ValueError, match="4-way identification needs at least 4 trials, got 3"):
        n_way_identification(np.eye(3), np.eye(3), 4)
    for bad in (1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="ways: expected an integer >= 2"):
            n_way_identification(np.eye(5), np.eye(5), bad)

"""Baselines (flat colour, mean image, low-pass) and bootstrap intervals; stored beside the methods' metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from braindiff_app.bundles import open_bundle, write_metrics
from braindiff_app.evaluation import (
    BASELINE_KINDS,
    baseline_images,
    bootstrap_interval,
    evaluate_baselines,
    interval_markdown,
    interval_rows,
    resize_images,
)
from tests.factories import make_bundle


def test_baseline_images_shapes_and_values():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    train = rng.integers(0, 256, size=(7, 8, 8, 3), dtype=np.uint8)
    images = baseline_images(gt, train, lowpass_size=4)
    assert set(images) == set(BASELINE_KINDS)
    for array in images.values():
        assert array.shape == gt.shape and array.dtype == np.uint8
    flat = images["baseline_flat"]
    assert (flat == flat[0, 0, 0]).all()  # one colour everywhere, the same for every trial
    np.testing.assert_allclose(flat[0, 0, 0], resize_images(train, 16).reshape(-1, 3).mean(0), atol=1)
    assert (images["baseline_mean"] == images["baseline_mean"][0]).all()
    np.testing.assert_array_equal(images["baseline_lowpass"], resize_images(resize_images(gt, 4), 16))
    with pytest.raises(ValueError, match="lowpass_size: expected a positive"):
        baseline_images(gt, None, 0)
    with pytest.raises(ValueError, match="ground_truth: expected uint8"):
        baseline_images(gt.astype(float), None, 4)


def test_bootstrap_interval_against_numpy():
    values = np.random.default_rng(1).normal(0.5, 0.1, size=200)
    low, high = bootstrap_interval(values, seed=3)
    assert low < values.mean() < high
    sem = values.std(ddof=1) / np.sqrt(values.size)  # normal approximation: mean ± 1.96 sem
    assert abs((high - low) - 2 * 1.96 * sem) < 0.3 * (high - low)
    assert bootstrap_interval(values, seed=3) == (low, high)
    assert np.isnan(bootstrap_interval(np.array([1.0, np.nan]))).all()
    with pytest.raises(ValueError, match="level: expected a fraction"):
        bootstrap_interval(values, level=95)


def test_evaluate_baselines_stores_extra_kinds_and_keeps_the_rest(tmp_path):
    bundle = make_bundle(tmp_path, name="demo-subj01", n_trials=6, size=16)
    write_metrics(bundle.path, {"final": {"PixCorr": np.linspace(0, 0.5, 6)}})
    before = json.loads((bundle.path / "metrics.json").read_text())
    bundle = open_bundle(bundle.path)
    computed = evaluate_baselines(bundle)
    assert set(computed) == set(BASELINE_KINDS) and set(computed["baseline_lowpass"]) == {"PixCorr"}
    after = json.loads((bundle.path / "metrics.json").read_text())
    assert after["final"] == before["final"]
    assert set(after) == {"final", *BASELINE_KINDS}
    assert computed["baseline_lowpass"]["PixCorr"].mean() > 0.5  # a blurred copy correlates with its original
    assert evaluate_baselines(open_bundle(bundle.path)) == {}  # resumable: nothing left to do
    rows = interval_rows([("Final", open_bundle(bundle.path).metrics["final"])])
    table = interval_markdown(rows, "T")
    assert "| Final | 0.250 [" in table and table.startswith("### T")

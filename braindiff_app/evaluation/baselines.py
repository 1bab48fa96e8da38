"""Baselines and intervals: what a metric's value means.

A metric is read against images that know nothing of the brain: a flat image of the training set's mean colour,
the training set's mean image, and a low-pass copy of the seen image at the VDVAE's resolution (the best a
perfect stage 1 could do). :func:`evaluate_baselines` computes the bundle's metrics for them and stores them in
its ``metrics.json`` under the extra kinds of :data:`BASELINE_KINDS` (the existing kinds' values are left as they
are). :func:`bootstrap_interval` gives 95% intervals of a mean over trials.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from braindiff_app.bundles import BASELINE_KINDS, Bundle, write_metrics
from braindiff_app.evaluation.backbones import Backbones
from braindiff_app.evaluation.metrics import PIXEL_METRICS, available_metrics, metrics_from_features, pixel_metrics
from braindiff_app.evaluation.registry import METRICS, check_metrics, format_value
from braindiff_app.images import resize_images

__all__ = [
    "BASELINE_KINDS",
    "BASELINE_LABELS",
    "baseline_images",
    "evaluate_baselines",
    "bootstrap_interval",
    "interval_rows",
    "interval_markdown",
]

BASELINE_LABELS = {
    "baseline_flat": "Baseline: flat mean colour",
    "baseline_mean": "Baseline: mean image",
    "baseline_lowpass": "Baseline: low-pass seen image",
}


def baseline_images(ground_truth: np.ndarray, train_images: np.ndarray | None, lowpass_size: int
                    ) -> dict[str, np.ndarray]:
    """The three baseline images of every trial.

    Parameters
    ----------
    ground_truth : array of shape (n_images, height, width, 3), uint8
        The seen images.
    train_images : array of shape (n_train, h, w, 3), uint8, or None
        Training images (resized to the ground truth's size); None: the seen images stand in for them (their mean
        then knows the test set, so it flatters the mean baselines slightly).
    lowpass_size : int
        Side in pixels of the low-pass copy (the VDVAE's output resolution: 32 in the demo, 64 on NSD).

    Returns
    -------
    dict of kind -> array of shape (n_images, height, width, 3), uint8
        ``baseline_flat`` (the mean colour everywhere), ``baseline_mean`` (the mean image) and
        ``baseline_lowpass`` (each seen image down to ``lowpass_size`` and back up, bicubic).
    """
    ground_truth = np.asarray(ground_truth)
    if ground_truth.ndim != 4 or ground_truth.shape[-1] != 3 or ground_truth.dtype != np.uint8:
        raise ValueError(f"ground_truth: expected uint8 array (n_images, height, width, 3), got "
                         f"{ground_truth.dtype} {ground_truth.shape}.")
    if int(lowpass_size) < 1:
        raise ValueError(f"lowpass_size: expected a positive number of pixels, got {lowpass_size}.")
    n, height, width, _ = ground_truth.shape
    source = ground_truth if train_images is None else resize_images(np.asarray(train_images), (height, width))
    mean_image = source.astype(np.float64).mean(axis=0)  # (height, width, 3)
    mean_colour = mean_image.mean(axis=(0, 1))  # (3,)
    flat = np.broadcast_to(np.round(mean_colour).astype(np.uint8), ground_truth.shape).copy()
    mean = np.broadcast_to(np.round(mean_image).astype(np.uint8), ground_truth.shape).copy()
    lowpass = resize_images(resize_images(ground_truth, int(lowpass_size)), (height, width))
    return {"baseline_flat": flat, "baseline_mean": mean, "baseline_lowpass": lowpass}


def evaluate_baselines(bundle: Bundle, backbones: Backbones | None = None, metrics: Iterable[str] | None = None,
                       train_images: np.ndarray | None = None, lowpass_size: int | None = None,
                       overwrite: bool = False, batch_size: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """Compute the bundle's metrics for the three baselines and store them under :data:`BASELINE_KINDS`.

    Parameters
    ----------
    bundle : Bundle
    backbones : Backbones or None, default None
        Loaded networks; None: pixel metrics only.
    metrics : iterable of str or None, default None
        Metrics wanted; None: those already stored for the bundle's ``final`` kind that ``backbones`` can compute
        (so baselines sit beside the methods, column for column).
    train_images : array of shape (n_train, h, w, 3), uint8, or None
        See :func:`baseline_images`.
    lowpass_size : int or None, default None
        None: the side of the bundle's VDVAE images.
    overwrite : bool, default False
        Recompute baseline metrics already stored.
    batch_size : int, default 32

    Returns
    -------
    dict of kind -> dict of metric -> array of shape (n_trials,)
        What was computed in this call.
    """
    available = available_metrics(backbones)
    if metrics is None:
        wanted = [m for m in bundle.metrics.get("final", {}) if m in available] or list(PIXEL_METRICS)
    else:
        wanted = [m for m in check_metrics(metrics) if m in available]
    stored = bundle.metrics
    todo = {k: [m for m in wanted if overwrite or m not in stored.get(k, {})] for k in BASELINE_KINDS}
    if not any(todo.values()):
        return {}
    ground_truth = np.stack([bundle.image(i, "ground_truth") for i in range(bundle.n_trials)])
    if lowpass_size is None:
        lowpass_size = bundle.image(0, "vdvae").shape[0] if "vdvae" in bundle.kinds else 64
    images = baseline_images(ground_truth, train_images, lowpass_size)
    gt_features: dict[str, np.ndarray] = {}
    computed: dict[str, dict[str, np.ndarray]] = {}
    for kind, names in todo.items():
        if not names:
            continue
        names = [m for m in names if bundle.n_trials >= METRICS[m].min_trials]
        results = pixel_metrics(ground_truth, images[kind], [m for m in names if m in PIXEL_METRICS])
        network = [m for m in names if m not in PIXEL_METRICS]
        if network:
            new = [m for m in network if m not in gt_features]
            if new:
                gt_features.update(backbones.features(ground_truth, new, batch_size=batch_size))
            rec_features = backbones.features(images[kind], network, batch_size=batch_size)
            results.update(metrics_from_features({m: gt_features[m] for m in network}, rec_features))
        computed[kind] = {m: np.asarray(results[m], dtype=float) for m in names}
    write_metrics(bundle.path, computed)
    bundle._metrics = None  # the Bundle caches metrics.json
    return computed


def bootstrap_interval(values: np.ndarray, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-trial ``values`` (NaN values left out).

    Parameters
    ----------
    values : array of shape (n_trials,)
    level : float in (0, 1), default 0.95
    n_resamples : int, default 2000
    seed : int, default 0
        Seed of the resampling (the same values give the same interval).

    Returns
    -------
    (low, high) : tuple of float
        NaN, NaN when fewer than two finite values.
    """
    if not 0 < level < 1:
        raise ValueError(f"level: expected a fraction in (0, 1), got {level}.")
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(int(n_resamples), values.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def interval_rows(entries: Sequence[tuple[str, Mapping[str, np.ndarray]]], level: float = 0.95
                  ) -> list[dict[str, Any]]:
    """Rows ``{"label", metric: (mean, low, high)}`` of a table with bootstrap intervals over trials.

    Parameters
    ----------
    entries : sequence of (label, {metric: array of shape (n_trials,)})
        One per row, e.g. ``("Final reconstruction", bundle.metrics["final"])``.
    level : float, default 0.95
    """
    columns = [m for m in METRICS if any(m in table for _, table in entries)]
    rows = []
    for label, table in entries:
        row: dict[str, Any] = {"label": label}
        for metric in columns:
            values = table.get(metric)
            if values is None or not np.isfinite(values).any():
                row[metric] = (float("nan"),) * 3
                continue
            row[metric] = (float(np.nanmean(values)), *bootstrap_interval(values, level))
        rows.append(row)
    return rows


def interval_markdown(rows: Sequence[dict[str, Any]], title: str | None = None, first_column: str = "Method"
                      ) -> str:
    """Markdown table of :func:`interval_rows`: each cell 'mean [low, high]' in the paper's formats.

    A row whose interval is NaN (an average over subjects, one trial) shows the mean alone.
    """
    columns = [m for m in METRICS if rows and m in rows[0]]
    lines = [f"### {title}", ""] if title else []
    lines.append(f"| {first_column} | " + " | ".join(f"{m} {'↑' if METRICS[m].higher_is_better else '↓'}"
                                            for m in columns) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * len(columns)) + "|")
    for row in rows:
        cells = []
        for m in columns:
            mean, low, high = row[m]
            if mean != mean:
                cells.append("–")
            elif low != low:
                cells.append(format_value(m, mean))
            else:
                cells.append(f"{format_value(m, mean)} [{format_value(m, low)}, {format_value(m, high)}]")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

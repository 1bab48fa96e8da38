"""Per-trial metrics of reconstructions against their ground truth."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from braindiff_app.evaluation.backbones import Backbones
from braindiff_app.evaluation.identification import correlation_distance, n_way_identification
from braindiff_app.evaluation.pixel import pixcorr, ssim
from braindiff_app.evaluation.registry import METRICS, check_metrics
from braindiff_app.images import check_images, resize_images

__all__ = ["PIXEL_METRICS", "available_metrics", "pixel_metrics", "metrics_from_features", "compute_metrics"]

PIXEL_METRICS = tuple(m for m, info in METRICS.items() if info.method == "pixel")


def available_metrics(backbones: Backbones | None = None) -> tuple[str, ...]:
    """Metrics computable with ``backbones`` (the pixel metrics always), in table order."""
    network = backbones.metrics if backbones is not None else ()
    return tuple(m for m in METRICS if m in PIXEL_METRICS or m in network)


def pixel_metrics(ground_truth: np.ndarray, reconstructions: np.ndarray,
                  metrics: Iterable[str] = PIXEL_METRICS) -> dict[str, np.ndarray]:
    """PixCorr, SSIM (2-D) and SSIM-ref (the reference's per-column variant), per trial.

    Parameters
    ----------
    ground_truth : array of shape (n_images, height, width, 3), uint8
    reconstructions : array of shape (n_images, h, w, 3), uint8
        Compared at the ground truth's size (resized with PIL bicubic, as the reference's 512 -> 425).
    metrics : iterable of str, default all three

    Returns
    -------
    dict of str to array of shape (n_images,), float32
    """
    metrics = [m for m in metrics if m in PIXEL_METRICS]
    if not metrics:
        return {}
    # resize once for all three (each function leaves images already at the ground truth's size alone)
    reconstructions = resize_images(check_images(reconstructions, "reconstructions"), ground_truth.shape[1:3])
    compute = {
        "PixCorr": lambda: pixcorr(ground_truth, reconstructions),
        "SSIM": lambda: ssim(ground_truth, reconstructions, variant="2d"),
        "SSIM-ref": lambda: ssim(ground_truth, reconstructions, variant="reference"),
    }
    return {m: compute[m]() for m in metrics}


def metrics_from_features(ground_truth_features: Mapping[str, np.ndarray],
                          reconstruction_features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Network metrics from features already extracted (so the ground truth is run once per bundle).

    Parameters
    ----------
    ground_truth_features, reconstruction_features : mapping of metric -> array of shape (n_images, n_features)
        From :meth:`Backbones.features`, with the same keys.

    Returns
    -------
    dict of str to array of shape (n_images,), float32
        Identification metrics: 2-way, the fraction of the n - 1 distractors beaten; n-way, the chance of beating
        ``ways - 1`` random ones; EffNet-B and SwAV: 1 - r.
    """
    out = {}
    for metric, rec in reconstruction_features.items():
        gt = ground_truth_features[metric]
        if METRICS[metric].method == "distance":
            out[metric] = correlation_distance(gt, rec)
        else:
            out[metric] = n_way_identification(gt, rec, METRICS[metric].ways)
    return out


def compute_metrics(ground_truth: np.ndarray, reconstructions: np.ndarray, metrics: Iterable[str] | None = None,
                    backbones: Backbones | None = None, batch_size: int = 32) -> dict[str, np.ndarray]:
    """The paper's metrics for each trial: reconstruction i against ground-truth image i.

    Parameters
    ----------
    ground_truth : array of shape (n_images, height, width, 3), uint8
        The seen images (NSD: 425 x 425).
    reconstructions : array of shape (n_images, h, w, 3), uint8
        One per ground-truth image, same order (any size; resized as each metric prescribes).
    metrics : iterable of str or None, default None
        Names from :data:`~braindiff_app.evaluation.registry.METRICS`; None means every metric computable with
        ``backbones`` (the pixel metrics always).
    backbones : Backbones or None, default None
        Loaded evaluation networks (already on their device); None computes the pixel metrics only.
    batch_size : int, default 32
        Images per network forward pass.

    Returns
    -------
    dict of str to array of shape (n_images,), float32
        In table order. 2-way identification: fraction of the n - 1 distractors beaten (needs n_images >= 2);
        EffNet-B / SwAV: correlation distance; PixCorr: Pearson r; SSIM / SSIM-ref: mean SSIM.

    Raises
    ------
    ValueError
        If a requested metric needs a backbone that is not loaded (the message names the missing file).
    """
    check_images(ground_truth, "ground_truth")
    check_images(reconstructions, "reconstructions")
    if len(ground_truth) != len(reconstructions):
        raise ValueError(f"reconstructions: expected one per ground-truth image ({len(ground_truth)}), "
                         f"got {len(reconstructions)}.")
    available = available_metrics(backbones)
    if metrics is None:  # every computable metric the number of images allows (4-way needs 4)
        wanted = tuple(m for m in available if len(ground_truth) >= METRICS[m].min_trials)
    else:
        wanted = check_metrics(metrics)
    unavailable = [m for m in wanted if m not in available]
    if unavailable:
        reasons = "; ".join((backbones.missing.get(m) if backbones is not None else None)
                            or f"{m}: needs its backbone (pass backbones=load_backbones(...))" for m in unavailable)
        raise ValueError(f"metrics: cannot compute {unavailable}: {reasons}")
    results = pixel_metrics(ground_truth, reconstructions, [m for m in wanted if m in PIXEL_METRICS])
    network = [m for m in wanted if m not in PIXEL_METRICS]
    if network:
        gt_features = backbones.features(ground_truth, network, batch_size=batch_size)
        rec_features = backbones.features(reconstructions, network, batch_size=batch_size)
        results.update(metrics_from_features(gt_features, rec_features))
    return {m: results[m] for m in wanted}

"""Evaluation: the paper's eight metrics, reports and plots.

``compute_metrics(ground_truth, reconstructions, metrics=None, backbones=None)`` gives per-trial values;
``load_backbones`` / ``backbones_from_settings`` load the networks from local files; ``evaluate_bundle`` stores
metrics in a bundle, and ``summary_table`` / ``ablation_table`` / ``write_report`` summarise bundles.
The demo world's content judge lives in :mod:`braindiff_app.demo.judge` (imported from there: it needs
torch at import time, which this package does not).
"""

from braindiff_app.evaluation.backbones import (
    BACKBONES,
    Backbones,
    BackboneSpec,
    backbones_from_settings,
    build_network,
    download_weights,
    load_backbones,
    load_clip_encoder,
    load_network,
    weight_file,
)
from braindiff_app.evaluation.baselines import (
    BASELINE_KINDS,
    BASELINE_LABELS,
    baseline_images,
    bootstrap_interval,
    evaluate_baselines,
    interval_markdown,
    interval_rows,
)
from braindiff_app.evaluation.identification import (
    correlation_distance,
    n_way_identification,
    pearson_matrix,
    two_way_identification,
)
from braindiff_app.evaluation.metrics import (
    PIXEL_METRICS,
    available_metrics,
    compute_metrics,
    metrics_from_features,
    pixel_metrics,
)
from braindiff_app.evaluation.pixel import SSIM_VARIANTS, pixcorr, ssim, ssim_single, to_grayscale
from braindiff_app.evaluation.registry import METRIC_NAMES, METRICS, MetricInfo, check_metrics, format_value
from braindiff_app.evaluation.report import (
    TABLE2_KINDS,
    ablation_table,
    evaluate_bundle,
    figure_distributions,
    figure_metric_bars,
    summary_table,
    table_csv,
    table_markdown,
    write_report,
)
from braindiff_app.images import resize_images  # the one resize (re-exported: PixCorr/SSIM resize with it)

__all__ = [
    # metrics
    "METRICS",
    "METRIC_NAMES",
    "MetricInfo",
    "PIXEL_METRICS",
    "check_metrics",
    "format_value",
    "compute_metrics",
    "available_metrics",
    "pixel_metrics",
    "metrics_from_features",
    # pixel level
    "SSIM_VARIANTS",
    "pixcorr",
    "ssim",
    "ssim_single",
    "to_grayscale",
    "resize_images",
    # feature comparisons
    "pearson_matrix",
    "n_way_identification",
    "two_way_identification",
    "correlation_distance",
    # backbones
    "BACKBONES",
    "BackboneSpec",
    "Backbones",
    "build_network",
    "load_network",
    "load_clip_encoder",
    "load_backbones",
    "backbones_from_settings",
    "download_weights",
    "weight_file",
    # baselines and intervals
    "BASELINE_KINDS",
    "BASELINE_LABELS",
    "baseline_images",
    "evaluate_baselines",
    "bootstrap_interval",
    "interval_rows",
    "interval_markdown",
    # reports
    "TABLE2_KINDS",
    "evaluate_bundle",
    "summary_table",
    "ablation_table",
    "table_markdown",
    "table_csv",
    "figure_metric_bars",
    "figure_distributions",
    "write_report",
]

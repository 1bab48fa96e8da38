"""The metrics by name: what each measures, which way is better, and what it needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MetricInfo", "METRICS", "METRIC_NAMES", "check_metrics", "format_value"]


@dataclass(frozen=True)
class MetricInfo:
    """One metric of the paper's Table 1 (or a named variant of one).

    Attributes
    ----------
    name : str
        Key in ``metrics.json`` and column title.
    method : str in {"pixel", "identification", "distance"}
        ``"pixel"``: computed on pixels; ``"identification"``: 2-way identification (fraction, chance 0.5);
        ``"distance"``: mean correlation distance (1 - r).
    higher_is_better : bool
    backbone : str or None
        Network whose features it compares (None for pixel metrics).
    description : str
    """

    name: str
    method: str
    higher_is_better: bool
    backbone: str | None
    description: str


METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("PixCorr", "pixel", True, None,
               "Pearson r over all RGB pixels at the ground truth's size (425 px in NSD)"),
    MetricInfo("SSIM", "pixel", True, None,
               "standard 2-D SSIM on grayscale, Gaussian window sigma 1.5, data_range 1"),
    MetricInfo("SSIM-ref", "pixel", True, None,
               "SSIM as the reference's call behaves in old scikit-image: per-column 1-D SSIM, averaged"),
    MetricInfo("AlexNet(2)", "identification", True, "alexnet", "2-way identification, AlexNet features[4]"),
    MetricInfo("AlexNet(5)", "identification", True, "alexnet", "2-way identification, AlexNet features[11]"),
    MetricInfo("Inception", "identification", True, "inception", "2-way identification, Inception-v3 avgpool"),
    MetricInfo("CLIP", "identification", True, "clip", "2-way identification, CLIP ViT-L/14 image embedding"),
    MetricInfo("demo-CLIP", "identification", True, "clip",
               "2-way identification with the demo tier's small CLIP vision encoder (not comparable to CLIP)"),
    MetricInfo("EffNet-B", "distance", False, "efficientnet", "correlation distance, EfficientNet-B1 avgpool"),
    MetricInfo("SwAV", "distance", False, "swav", "correlation distance, SwAV ResNet-50 avgpool"),
)}
METRIC_NAMES = tuple(METRICS)


def check_metrics(metrics: Iterable[str] | None, name: str = "metrics") -> tuple[str, ...]:
    """Validate metric names; None means all of them. Returns them in table order."""
    if metrics is None:
        return METRIC_NAMES
    if isinstance(metrics, str):
        raise TypeError(f"{name}: expected a list of metric names, got the string {metrics!r}; "
                        f"write [{metrics!r}].")
    requested = list(metrics)
    unknown = [m for m in requested if m not in METRICS]
    if unknown:
        raise ValueError(f"{name}: unknown metric(s) {unknown}; expected some of {list(METRIC_NAMES)}.")
    return tuple(m for m in METRIC_NAMES if m in requested)


def format_value(metric: str, value: float) -> str:
    """Format a mean as the paper does: identification as a percentage, the others with three decimals."""
    if value != value:  # NaN
        return "-"
    if METRICS[metric].method == "identification":
        return f"{100 * value:.1f}%"
    return f"{value:.3f}"

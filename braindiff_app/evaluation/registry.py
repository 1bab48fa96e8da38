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
        ``"pixel"``: computed on pixels; ``"identification"``: n-way identification (fraction, chance ``1 / ways``);
        ``"distance"``: mean correlation distance (1 - r).
    higher_is_better : bool
    backbone : str or None
        Network whose features it compares (None for pixel metrics).
    description : str
    ways : int, default 2
        Identification only: images shown at once (the seen one and ``ways - 1`` distractors drawn from the other
        trials); 4 is the classroom quiz's four choices.
    features : str or None, default None
        The metric whose features this one compares (None: its own); ``CLIP 4-way`` reads ``CLIP``'s.
    """

    name: str
    method: str
    higher_is_better: bool
    backbone: str | None
    description: str
    ways: int = 2
    features: str | None = None

    @property
    def feature_source(self) -> str:
        """The metric whose network features this metric compares."""
        return self.features or self.name

    @property
    def min_trials(self) -> int:
        """Fewest trials the metric is defined for (identification needs ``ways`` images to choose from)."""
        return self.ways if self.method == "identification" else 1


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
    MetricInfo("CLIP 4-way", "identification", True, "clip",
               "4-way identification (the classroom quiz's odds: the seen image against 3 random other test images), "
               "CLIP ViT-L/14 image embedding", ways=4, features="CLIP"),
    MetricInfo("demo-CLIP 4-way", "identification", True, "clip",
               "4-way identification (the classroom quiz's odds) with the demo tier's small CLIP vision encoder",
               ways=4, features="demo-CLIP"),
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

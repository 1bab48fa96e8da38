"""Table 2's methods and baselines with intervals, and each against the full model paired per trial.

For the committed demo bundles (or any bundles), per metric: each method's and baseline's mean with a 95% percentile
bootstrap interval over trials (as the Metrics tab shows them); then each one's per-trial scores (``metrics.json``,
as ``braindiff evaluate`` wrote them) minus the final reconstruction's on the same trials: the mean difference with a
95% percentile bootstrap interval (:func:`braindiff_app.evaluation.bootstrap_interval`). Identification is printed
in percent (differences in points). It reads the bundles only: nothing is generated.

Usage: python bench/ablations.py [BUNDLE ...] [--metrics PixCorr,SSIM,demo-CLIP,demo-CLIP 4-way]
       (default: the repo's precomputed/demo-* bundles)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from braindiff_app.bundles import open_bundle  # noqa: E402
from braindiff_app.evaluation import METRICS, bootstrap_interval  # noqa: E402


def _cell(values: np.ndarray, metric: str, signed: bool) -> str:
    """Mean and 95% bootstrap interval of per-trial ``values``; identification in percent (points when signed)."""
    percent = METRICS[metric].method == "identification"
    scale = 100.0 if percent else 1.0
    low, high = bootstrap_interval(values)  # leaves NaN trials out, as the mean below does
    sign = "+" if signed else ""
    digits = 1 if percent else 3
    unit = "%" if percent and not signed else ""
    return (f"{scale * np.nanmean(values):{sign}.{digits}f}{unit} "
            f"[{scale * low:{sign}.{digits}f}, {scale * high:{sign}.{digits}f}]")


def _table(title: str, names: list[str], rows: dict[str, list[str]]) -> None:
    print(f"\n## {title}\n")
    print("| method | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for method, cells in rows.items():
        print(f"| {method} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="*", help="bundle folders (default: precomputed/demo-*)")
    parser.add_argument("--metrics", default="PixCorr,SSIM,demo-CLIP,demo-CLIP 4-way",
                        help="comma-separated metric names (default: %(default)s)")
    args = parser.parse_args(argv)
    paths = [Path(b) for b in args.bundles] or sorted((ROOT / "braindiff_app" / "precomputed").glob("demo-*"))
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        print(f"--metrics: unknown {', '.join(unknown)}; expected names from {', '.join(METRICS)}", file=sys.stderr)
        return 2
    for path in paths:
        bundle = open_bundle(path)
        metrics = {m: {k: np.asarray(v, float) for k, v in scores.items()} for m, scores in bundle.metrics.items()}
        if "final" not in metrics:
            print(f"{path}: no final-reconstruction metrics; run `braindiff evaluate {path}` first", file=sys.stderr)
            return 1
        final = metrics["final"]
        _table(f"{bundle.name}: mean over {bundle.n_trials} trials [95% CI]", names,
               {method: [_cell(scores[n], n, False) if n in scores else "-" for n in names]
                for method, scores in metrics.items()})
        _table(f"{bundle.name}: method - final, mean over {bundle.n_trials} trials [95% CI]", names,
               {method: [_cell(scores[n] - final[n], n, True) if n in scores and n in final else "-" for n in names]
                for method, scores in metrics.items() if method != "final"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

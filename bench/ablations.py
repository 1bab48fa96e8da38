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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="*", help="bundle folders (default: precomputed/demo-*)")
    parser.add_argument("--metrics", default="PixCorr,SSIM,demo-CLIP,demo-CLIP 4-way",
                        help="comma-separated metric names (default: %(default)s)")
    args = parser.parse_args(argv)
    paths = [Path(b) for b in args.bundles] or sorted((ROOT / "braindiff_app" / "precomputed").glob("demo-*"))
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for path in paths:
        bundle = open_bundle(path)
        metrics = bundle.metrics
        if "final" not in metrics:
            print(f"{path}: no final-reconstruction metrics; run `braindiff evaluate {path}` first", file=sys.stderr)
            return 1
        print(f"\n## {bundle.name}: mean over {bundle.n_trials} trials [95% CI]\n")
        print("| method | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for method in metrics:
            cells = []
            for name in names:
                values = np.asarray(metrics[method].get(name, []), float)
                if not len(values):
                    cells.append("-")
                    continue
                scale = 100.0 if METRICS[name].method == "identification" else 1.0
                low, high = bootstrap_interval(values)
                cells.append(f"{values.mean():.3f} [{low:.3f}, {high:.3f}]" if scale == 1
                             else f"{scale * values.mean():.1f}% [{scale * low:.1f}, {scale * high:.1f}]")
            print(f"| {method} | " + " | ".join(cells) + " |")
        print(f"\n## {bundle.name}: method - final, mean over {bundle.n_trials} trials [95% CI]\n")
        print("| method | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for method in metrics:
            if method == "final":
                continue
            cells = []
            for name in names:
                if name not in metrics[method] or name not in metrics["final"]:
                    cells.append("-")
                    continue
                diff = np.asarray(metrics[method][name], float) - np.asarray(metrics["final"][name], float)
                scale = 100.0 if METRICS[name].method == "identification" else 1.0
                low, high = bootstrap_interval(diff)
                cells.append(f"{scale * diff.mean():+.3f} [{scale * low:+.3f}, {scale * high:+.3f}]" if scale == 1
                             else f"{scale * diff.mean():+.1f} [{scale * low:+.1f}, {scale * high:+.1f}]")
            print(f"| {method} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""ROI studio batches on the demo tier: seconds and CPU seconds per image, alone and in a batch, by torch threads.

What the app's micro-batcher (braindiff_app/ui/_batching.py) and its thread choice (``braindiff app`` leaves one
core for serving, braindiff_app/cli/app.py) rest on. The baseline, measured side by side in the same process, is one
image alone with 1 thread; every row prints its ratio to it. Also prints how far batched final images are from single
ones (float summation order; the VDVAE guess is compared too).

Usage: python bench/roi_batch.py [--threads 1 2] [--batch 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(run) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="the best of this many runs is kept")
    args = parser.parse_args()

    import torch

    from braindiff_app.config import load_settings
    from braindiff_app.ui.roi import ROIHandlers
    from braindiff_app.ui.state import AppState

    handlers = ROIHandlers(AppState(load_settings(tier="demo")))
    recipes = [handlers.recipe("1", {"V1": 1.0 - 0.25 * (i % 8), "faces": 0.5}, None, 1.0, seed=i)
               for i in range(args.batch)]
    items = [(handlers.models().features(r), r.seed, None) for r in recipes]
    stage2 = recipes[0].stage2
    handlers._run_batch(stage2, items[:1])  # warm-up
    rows, baseline = [], None
    for threads in args.threads:
        torch.set_num_threads(threads)
        for n in (1, args.batch):
            best = min((timed(lambda n=n: handlers._run_batch(stage2, items[:n])) for _ in range(args.repeats)),
                       key=lambda t: t[0])
            baseline = baseline or (best[0], best[1])
            rows.append((threads, n, best[0] / n, best[1] / n))
        singles = [handlers._run_batch(stage2, [item])[0] for item in items]
        pairs = list(zip(singles, best[2], strict=True))
        rows[-1] += (max(int(np.abs(a.final.astype(int) - b.final.astype(int)).max()) for a, b in pairs),
                     sum(int((a.final != b.final).sum()) for a, b in pairs), sum(a.final.size for a, _ in pairs),
                     all(np.array_equal(a.vdvae, b.vdvae) for a, b in pairs))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; demo models, subject 1, "
          f"{stage2.num_inference_steps} DDIM steps at strength {stage2.strength}")
    print("threads  batch  s/image  CPU-s/image  ratio to 1 image with the first thread count (wall, CPU)")
    for threads, n, wall, cpu, *diff in rows:
        print(f"{threads:7d}  {n:5d}  {wall:7.3f}  {cpu:11.3f}  {wall / baseline[0]:.2f}x, {cpu / baseline[1]:.2f}x")
        if diff:
            print(f"{'':14s}batched vs single final images: at most {diff[0]} grey level(s) apart on {diff[1]} of "
                  f"{diff[2]} values ({diff[1] / diff[2]:.4%}); VDVAE guesses identical: {diff[3]}")


if __name__ == "__main__":
    main()

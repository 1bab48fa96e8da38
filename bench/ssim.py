"""Benchmark: SSIM and SSIM-ref of a stack of image pairs, against scikit-image called image by image.

``braindiff_app.evaluation.pixel.ssim`` filters the whole stack at once; the baseline, run side by side in the same
process on the same pairs, is scikit-image's ``structural_similarity`` called per image (for SSIM-ref with the
columns as channels: one 1-D SSIM per column, as the reference's call computes), which is what braindiff did
before. Prints seconds per image, the ratio baseline / ours, and the largest difference between the two.

Usage::

    python bench/ssim.py --pairs 100 --size 64      # the demo's test set (64 px seen images)
    python bench/ssim.py --pairs 20 --size 425      # NSD's 425 px seen images
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from braindiff_app.evaluation import ssim, to_grayscale  # noqa: E402


def baseline(gt: np.ndarray, rec: np.ndarray, variant: str) -> np.ndarray:
    from skimage.metrics import structural_similarity

    extra = {"channel_axis": -1} if variant == "reference" else {}
    return np.asarray([structural_similarity(to_grayscale(r), to_grayscale(g), gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False, data_range=1.0, **extra)
                       for g, r in zip(gt, rec, strict=True)], dtype=np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="side of the images in pixels (default 64)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    shape = (args.pairs, args.size, args.size, 3)
    gt = rng.integers(0, 256, size=shape, dtype=np.uint8)
    rec = np.clip(gt.astype(int) + rng.normal(0, 40, size=shape), 0, 255).astype(np.uint8)  # related images
    print(f"{args.pairs} pairs of {args.size} px images")
    for variant in ("2d", "reference"):  # imports and first-call costs out of the timings
        ssim(gt[:1], rec[:1], variant=variant), baseline(gt[:1], rec[:1], variant)
    for variant, metric in (("2d", "SSIM"), ("reference", "SSIM-ref")):
        t0 = time.perf_counter()
        ours = ssim(gt, rec, variant=variant)
        t1 = time.perf_counter()
        base = baseline(gt, rec, variant)
        t2 = time.perf_counter()
        print(f"  {metric:8s} braindiff {1e3 * (t1 - t0) / args.pairs:8.2f} ms/image   scikit-image per image "
              f"{1e3 * (t2 - t1) / args.pairs:8.2f} ms/image   ratio {(t2 - t1) / (t1 - t0):6.1f}x   "
              f"max |difference| {np.abs(ours - base).max():.1e}")


if __name__ == "__main__":
    main()

"""Benchmark: the eight metrics on N image pairs (the paper's test set: 982), with random-weight backbones.

Builds the real architectures (AlexNet, Inception-v3, EfficientNet-B1, ResNet-50 for SwAV, a CLIP ViT-L/14
vision tower with projection) with random weights, makes N random 425 px "seen" images and N random 512 px
"reconstructions", and times each stage of ``compute_metrics``. Side by side in the same run it times a
baseline: bare forward passes of the same networks on ready-made 224 px tensors (what any evaluation must
spend), and prints each network metric's time as a ratio to it (the overhead of resizing, hooks and the
N x N correlations). Per-image work at fewer pairs is extrapolated linearly to 982 (the printout says so); the
identification matrices are always timed at 982 x 982 on random features of each layer's real size.

Usage::

    python bench/metrics.py --pairs 982 --device cuda          # a GPU machine
    python bench/metrics.py --pairs 8 --threads 2 --no-clip    # a small CPU run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from braindiff_app.evaluation import (  # noqa: E402
    BACKBONES,
    Backbones,
    build_network,
    metrics_from_features,
    pixel_metrics,
)

PAPER_PAIRS = 982


def _clip_vit_l14():
    """A CLIP ViT-L/14 vision tower with projection (the real sizes), random weights."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    return CLIPVisionModelWithProjection(config).eval().requires_grad_(False)


def _timed(fn, sync):
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=PAPER_PAIRS, help="image pairs (default 982)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-clip", action="store_true", help="leave out CLIP ViT-L/14 (slow on a CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n = args.pairs
    ground_truth = rng.integers(0, 256, size=(n, 425, 425, 3), dtype=np.uint8)
    reconstructions = rng.integers(0, 256, size=(n, 512, 512, 3), dtype=np.uint8)

    networks = {name: build_network(name).to(device) for name in BACKBONES}
    clip = None if args.no_clip else _clip_vit_l14().to(device)
    backbones = Backbones(networks, clip_encoder=clip, clip_metric="CLIP")
    print(f"{n} pairs (425 px ground truth, 512 px reconstructions) on {device}, "
          f"{torch.get_num_threads()} CPU threads, batch {args.batch_size}, random weights", flush=True)

    rows: list[tuple[str, float, float | None, str]] = []  # (stage, seconds at n, extrapolated to 982, note)
    scale_linear = PAPER_PAIRS / n

    note = "" if n == PAPER_PAIRS else f" (extrapolated from {n} pairs)"
    print(f"\n{'stage':<38} {'seconds':>9} {'at 982' + note:>12}  note")

    def report(stage: str, seconds: float, extrapolated: float, info: str) -> None:
        rows.append((stage, seconds, extrapolated, info))
        print(f"{stage:<38} {seconds:9.2f} {extrapolated:12.1f}  {info}", flush=True)

    for metric in ("PixCorr", "SSIM", "SSIM-ref"):
        _, seconds = _timed(lambda m=metric: pixel_metrics(ground_truth, reconstructions, [m]), sync)
        report(metric, seconds, seconds * scale_linear, "per image")

    groups = {spec.title: spec.metrics for spec in BACKBONES.values()}
    if clip is not None:
        groups["CLIP ViT-L/14"] = ("CLIP",)
    baseline_total = total = 0.0
    for title, metrics in groups.items():
        model = clip if title.startswith("CLIP") else networks[next(k for k, s in BACKBONES.items()
                                                                     if s.title == title)]
        x = torch.randn(min(args.batch_size, 2 * n), 3, 224, 224, device=device)
        batches = -(-2 * n // len(x))

        def bare(model=model, x=x, title=title, repeats=batches):
            with torch.inference_mode():
                for _ in range(repeats):
                    model(pixel_values=x) if title.startswith("CLIP") else model(x)

        bare(repeats=1)  # warm-up (cuDNN / oneDNN kernel selection)
        _, base = _timed(bare, sync)
        feats, extract = _timed(lambda m=metrics: (backbones.features(ground_truth, m, args.batch_size),
                                                   backbones.features(reconstructions, m, args.batch_size)), sync)
        # The N x N correlations are timed at the full 982 with random features of the real sizes.
        full = [{m: rng.standard_normal((PAPER_PAIRS, f.shape[1]), dtype=np.float32) for m, f in feats[0].items()}
                for _ in range(2)]
        _, compare = _timed(lambda f=full: metrics_from_features(*f), sync)
        del full
        dims = ", ".join(f"{m} {f.shape[1]}-d" for m, f in feats[0].items())
        report(f"{'/'.join(metrics)} features", extract, extract * scale_linear, f"{extract / base:.2f}x bare")
        report(f"{'/'.join(metrics)} compare (982)", compare, compare, dims)
        baseline_total += base * scale_linear
        total += extract * scale_linear + compare
    total += sum(r[2] for r in rows[:3])

    print(f"\nall metrics for {PAPER_PAIRS} pairs: {total:.0f} s{note}; bare network forwards alone: "
          f"{baseline_total:.0f} s; ratio {total / baseline_total:.2f}x")


if __name__ == "__main__":
    main()

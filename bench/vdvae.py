"""Benchmark stage 1: images/s of VDVAE latent extraction and decoding, eager float32 vs faster settings.

Every setting is measured in this process, side by side with the eager float32 baseline, and printed as a
ratio to it. Examples::

    # CPU, the committed demo model
    python bench/vdvae.py
    # GPU, the imagenet64 architecture with random weights, batch 30 (Brain-Diffuser's size)
    python bench/vdvae.py --device cuda --config imagenet64 --batch 30
    # no GPU: the imagenet64 architecture on the CPU at a tiny batch (slow; one setting is enough)
    python bench/vdvae.py --config imagenet64 --batch 2 --n-images 2 --settings eager

Settings: ``eager`` (float32), ``channels_last``, ``bf16``, ``fp16`` (CUDA only), ``compile`` (torch.compile of
every bottleneck block, float32) and ``compile_bf16``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from braindiff_app.config import DEMO_ASSETS_DIR  # noqa: E402
from braindiff_app.models._vdvae_blocks import Block  # noqa: E402
from braindiff_app.models.vdvae import VDVAE, VDVAEConfig, decode_latents, extract_latents, load_demo_vdvae  # noqa: E402

SETTINGS = ("eager", "channels_last", "bf16", "fp16", "compile", "compile_bf16")


def build(config_name: str) -> VDVAE:
    if config_name == "demo":
        return load_demo_vdvae(DEMO_ASSETS_DIR / "models")
    torch.manual_seed(0)
    return VDVAE(VDVAEConfig.imagenet64()).eval().requires_grad_(False)  # random weights, openai's init


def apply_setting(model: VDVAE, setting: str, device: torch.device) -> VDVAE:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "compile_bf16": torch.bfloat16}.get(setting,
                                                                                                torch.float32)
    model = model.to(device=device, dtype=dtype)
    if setting == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    if setting.startswith("compile"):
        # Every block shares one code object, compiled once per distinct shape: raise the recompile limit.
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, 512)
        for module in model.modules():
            if isinstance(module, Block):
                module.forward = torch.compile(module.forward, dynamic=False)
    return model


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", choices=("demo", "imagenet64"), default="demo")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n-images", type=int, default=None, help="images per timing (default: 2 batches)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--settings", default=None,
                        help=f"comma-separated subset of {','.join(SETTINGS)} (default: those that fit the device)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = args.settings.split(",") if args.settings else (
        list(SETTINGS) if device.type == "cuda" else ["eager", "channels_last", "bf16"])
    n_images = args.n_images or 2 * args.batch
    base = build(args.config)
    size = base.config.image_size
    images = np.random.default_rng(0).integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
    print(f"VDVAE {base.config.name} on {device} ({torch.get_num_threads()} CPU threads), batch {args.batch}, "
          f"{n_images} images, best of {args.repeats}")
    print(f"{'setting':<14}{'extract img/s':>15}{'ratio':>8}{'decode img/s':>15}{'ratio':>8}")
    baseline = None
    for setting in settings:
        if setting == "fp16" and device.type != "cuda":
            print(f"{setting:<14} skipped (float16 needs CUDA)")
            continue
        model = apply_setting(build(args.config) if setting != settings[0] else base, setting, device)
        latents = extract_latents(model, images, batch_size=args.batch, progress=False)
        t_extract = timed(lambda m=model: extract_latents(m, images, batch_size=args.batch, progress=False),
                          device, args.repeats)
        t_decode = timed(lambda m=model, z=latents: decode_latents(m, z, batch_size=args.batch, progress=False),
                         device, args.repeats)
        rates = (n_images / t_extract, n_images / t_decode)
        baseline = baseline or rates
        print(f"{setting:<14}{rates[0]:>15.3g}{rates[0] / baseline[0]:>8.2f}"
              f"{rates[1]:>15.3g}{rates[1] / baseline[1]:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

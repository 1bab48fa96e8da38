"""Seconds per image of stage 2 (dual-guided img2img), measured side by side in one process.

Demo tier (default): the committed demo models (assets/demo/models/vd), 64 px, strength 0.75 of 50 DDIM steps
(37 steps), guidance 7.5, batch 1 and 8, on the device you name:

    PYTHONPATH=. python bench/diffusion.py --device cpu

Real size (--real-size): Versatile Diffusion's architectures with random weights (image UNet 320-640-1280-1280,
cross-attention 768, AutoKL 128-256-512-512, 512 px), batch 1 and 8, comparing fp32 with fp16, bf16 and the
fastest setting (fp16 + channels_last + torch.compile; classifier-free guidance batched in every row, plus one
unbatched fp16 row). Ratios are against the first row.

    PYTHONPATH=. python bench/diffusion.py --device cuda --real-size
    PYTHONPATH=. python bench/diffusion.py --device cpu --real-size --steps 1 --batches 1 --variants fp32

The text UNet's transformer blocks are what dual guidance uses of it; the real-size bench takes them as a copy
of the image UNet's (the same shapes as Versatile Diffusion's text UNet blocks).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from braindiff_app.config import DEMO_ASSETS_DIR  # noqa: E402
from braindiff_app.models.img2img import DualGuidedImg2Img  # noqa: E402

VARIANTS = ("fp32", "fp16", "bf16", "fp16-unbatched-cfg", "fastest")


def real_size_components():
    """Versatile Diffusion's image UNet, text branch, AutoKL and DDIM schedule at full size, random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from braindiff_app.demo.vd import scheduler_config

    image_unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                      block_out_channels=(320, 640, 1280, 1280))
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512)
    vae.register_to_config(scaling_factor=0.18215)
    return vae, image_unet, copy.deepcopy(image_unet), DDIMScheduler(**scheduler_config())


def demo_components(folder: Path):
    from braindiff_app.models.versatile import load_versatile_diffusion

    c = load_versatile_diffusion(folder)
    return c.vae, c.image_unet, c.text_unet, c.scheduler


def time_call(pipe, n: int, steps: int, strength: float, batched_cfg: bool, sync) -> float:
    dim = pipe.image_unet.config.cross_attention_dim
    rng = np.random.default_rng(0)
    init = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    vision, text = rng.standard_normal((n, 257, dim), np.float32), rng.standard_normal((n, 77, dim), np.float32)
    uncond = dict(vision_uncond=vision[:1], text_uncond=text[:1])
    start = time.perf_counter()
    pipe(init, vision, text, strength=strength, num_inference_steps=steps, seeds=np.arange(n), batch_size=n,
         batched_cfg=batched_cfg, **uncond)
    sync()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="Versatile Diffusion's sizes, random weights")
    parser.add_argument("--vd-dir", type=Path, default=DEMO_ASSETS_DIR / "models" / "vd",
                        help="Versatile Diffusion folder for the demo tier (default: the demo's)")
    parser.add_argument("--steps", type=int, default=37, help="denoising steps run (default 37 = 0.75 of 50)")
    parser.add_argument("--batches", default="1,8", help="batch sizes, comma separated (default 1,8)")
    parser.add_argument("--variants", default=None, help=f"comma separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    default = VARIANTS if device.type == "cuda" else ("fp32",)
    variants = args.variants.split(",") if args.variants else default
    # strength * 50 DDIM steps = the steps run (37 at 0.75).
    strength = args.steps / 50
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"{'real size 512 px' if args.real_size else 'demo 64 px'}, {args.steps} steps, torch {torch.__version__}")
    print(f"{'variant':<20} {'batch':>5} {'s/image':>9} {'ratio':>7}")
    reference: dict[int, float] = {}
    for variant in variants:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(variant, torch.float16)
        torch.manual_seed(0)
        components = real_size_components() if args.real_size else demo_components(args.vd_dir)
        vae, image_unet, text_unet, scheduler = components
        for module in (vae, image_unet, text_unet):
            module.to(device, dtype).eval().requires_grad_(False)
        pipe = DualGuidedImg2Img(vae, image_unet, text_unet, scheduler)
        pipe.text_unet = text_unet = None  # its blocks now live in the dual image UNet; free the rest
        if variant == "fastest":
            pipe.image_unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
            pipe.image_unet = torch.compile(pipe.image_unet, mode="max-autotune-no-cudagraphs")
        for n in map(int, args.batches.split(",")):
            batched = variant != "fp16-unbatched-cfg"
            if device.type == "cuda" or variant == "fastest":
                time_call(pipe, n, min(args.steps, 2), 2 / 50, batched, sync)  # warm-up / compile
            seconds = time_call(pipe, n, args.steps, strength, batched, sync) / n
            reference.setdefault(n, seconds)
            print(f"{variant:<20} {n:>5} {seconds:>9.3f} {reference[n] / seconds:>6.2f}x", flush=True)
        del pipe, vae, image_unet
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak resident memory (RSS) of loading, reconstructing and extracting CLIP features, before and after trimming.

Each measurement runs in a fresh child process (peak RSS is per process), side by side in one run:
- load: ``load_versatile_diffusion`` with the whole text UNet ("before") vs only its transformer blocks
  (``text_unet="attention"``, what ``load_pipeline`` now does: "after");
- reconstruct: the same load, then the dual-guided img2img stage on one 64 px image (2 DDIM steps);
- extract clip: every component ("before", what ``braindiff extract clip`` used to load) vs the CLIP parts only.

Usage: python bench/memory.py [--vd FOLDER]   (default: the committed demo Versatile Diffusion folder; pass a
real Versatile Diffusion folder in diffusers layout for the real tier's numbers: about 10 GB of fp32 UNets)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CASES = {
    "load": ({"text_unet": "full"}, {"text_unet": "attention"}),
    "reconstruct": ({"text_unet": "full"}, {"text_unet": "attention"}),
    "extract clip": ({}, {"parts": ["image_encoder", "text_encoder", "tokenizer"]}),
}


def child(vd: str, case: str, options: dict) -> None:
    import numpy as np
    import torch

    from braindiff_app.models.versatile import load_versatile_diffusion

    torch.set_num_threads(2)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    components = load_versatile_diffusion(vd, **options)
    if case == "reconstruct":
        from braindiff_app.models.clip_features import unconditional_features
        from braindiff_app.models.img2img import DualGuidedImg2Img

        pipe = DualGuidedImg2Img(components.vae, components.image_unet, components.text_unet, components.scheduler,
                                 image_size=64)
        v_u, t_u = unconditional_features(components.image_encoder, components.text_encoder, components.tokenizer)
        rng = np.random.default_rng(0)
        pipe(rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8), rng.standard_normal(v_u.shape, np.float32),
             rng.standard_normal(t_u.shape, np.float32), vision_uncond=v_u, text_uncond=t_u, num_inference_steps=2,
             strength=1.0)
    if case == "extract clip":
        from braindiff_app.models.clip_features import clip_vision_features

        clip_vision_features(components.image_encoder, np.zeros((2, 64, 64, 3), np.uint8))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": peak / 1024, "base_mb": base / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vd", help="Versatile Diffusion folder (default: the demo tier's)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.vd, args.child, json.loads(args.options))
        return
    if args.vd is None:
        from braindiff_app.config import load_settings

        args.vd = str(load_settings(tier="demo").vd_path)
    print(f"Versatile Diffusion folder: {args.vd}")
    print(f"{'step':<14}{'before (MB)':>14}{'after (MB)':>14}{'ratio':>8}")
    for case, (before, after) in CASES.items():
        peaks = []
        for options in (before, after):
            out = subprocess.run([sys.executable, __file__, "--vd", args.vd, "--child", case, "--options",
                                  json.dumps(options)], capture_output=True, text=True, check=True)
            peaks.append(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])
        print(f"{case:<14}{peaks[0]:>14.0f}{peaks[1]:>14.0f}{peaks[1] / peaks[0]:>8.2f}")


if __name__ == "__main__":
    main()

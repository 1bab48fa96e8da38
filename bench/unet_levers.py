"""What more training of the demo UNet buys: more steps, more scenes, cross-attention at the 16x16 level.

Each lever fine-tunes a copy of the committed demo UNet (``braindiff_app/assets/demo/models/vd``) for ``--steps``
steps with the settings of its low-rate tail (``TrainConfig.unet_tail_lr``, ``unet_tail_ema``), side by side in one
process, on the demo world's training scenes (world seed 1, as ``braindiff demo train-diffusion`` draws them):

- ``committed``: no training (the baseline);
- ``steps``: the same 2000 training scenes;
- ``scenes``: 8000 training scenes (the first 2000 and 6000 more);
- ``attention16``: the 2000 scenes, with cross-attention grown into the UNet's 16x16 up block (image and text
  branch); its output projection starts at zero, so the grown UNet starts as the committed one.

For each it prints the epsilon loss on 512 training scenes and on 512 held-out scenes (the same noise, timesteps
100 / 300 / 600 / 900 and mixing 0.6 for every lever); 4-way / 2-way identification of images generated with no
init from the TRUE features of ``--n-eval`` held-out scenes (the tier's 20 DDIM steps, guidance 7.5, mixing 0.6),
by the demo CLIP embedding images as ``training.json``'s identification does
(:func:`~braindiff_app.demo.train_vd.clip_image_embeddings`: a bicubic resize, where ``braindiff evaluate`` resizes
bilinearly); and the seconds per training step (encoding the scenes once at the start included) with their ratio
to the first lever trained (``steps`` by default).

``--sheet PNG`` instead writes what the committed models make of 16 held-out scenes, one row each: the scenes,
images generated (no init) from their true features with seeds 0 and 100, and their AutoKL round trips (128 px per
image, nearest-neighbour), and exits.

    python bench/unet_levers.py --steps 800 --threads 2
    python bench/unet_levers.py --sheet docs/img/true_features.png
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._levers import chosen_levers  # noqa: E402
from braindiff_app.cli.train_diffusion import EVAL_START, WORLD_SEED  # noqa: E402
from braindiff_app.config import DEMO_ASSETS_DIR  # noqa: E402
from braindiff_app.demo.stimuli import render_scenes  # noqa: E402
from braindiff_app.demo.train_vd import (  # noqa: E402
    TrainConfig,
    _encode_latents,
    _train_unet,
    clip_image_embeddings,
    generate_from_true_features,
)
from braindiff_app.evaluation.identification import n_way_identification  # noqa: E402
from braindiff_app.models._vd_compat import make_dual_unet, revert_dual_unet, set_dual_condition  # noqa: E402
from braindiff_app.models.clip_features import (  # noqa: E402
    clip_text_features,
    clip_vision_features,
)
from braindiff_app.models.versatile import VersatileComponents, load_versatile_diffusion  # noqa: E402

LEVERS = ("committed", "steps", "scenes", "attention16")


def grow_attention16(c: VersatileComponents) -> VersatileComponents:
    """The components with cross-attention in the 16x16 up block of both UNets, output projection zeroed."""
    from diffusers import UNet2DConditionModel

    from braindiff_app.models._vd_compat import text_unet_class

    def grow(old, cls, up_blocks):
        config = {k: v for k, v in old.config.items() if not k.startswith("_")}
        new = cls(**{**config, "up_block_types": up_blocks})
        missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
        if unexpected or not missing:
            raise RuntimeError(f"growing {cls.__name__}: unexpected {unexpected}, new {len(missing)} tensors")
        with torch.no_grad():
            for name, p in new.named_parameters():
                if name in missing and "proj_out" in name:
                    p.zero_()
        return new

    return dataclasses.replace(
        c, image_unet=grow(c.image_unet, UNet2DConditionModel, ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
        text_unet=grow(c.text_unet, text_unet_class(), ("CrossAttnUpBlockFlat", "CrossAttnUpBlockFlat")))


@torch.no_grad()
def eps_loss(c: VersatileComponents, images: np.ndarray, captions: list[list[str]], seed: int = 0) -> float:
    """Mean epsilon-prediction MSE at timesteps 100/300/600/900, mixing 0.6, fixed noise."""
    means, _ = _encode_latents(c.vae, images)
    scale = float(c.vae.config.scaling_factor)
    vision = torch.from_numpy(clip_vision_features(c.image_encoder, images, batch_size=64))
    text = torch.from_numpy(clip_text_features(c.text_encoder, c.tokenizer, captions, batch_size=64))
    unet = make_dual_unet(c.image_unet, c.text_unet).eval()
    set_dual_condition(unet, 0.6, vision.shape[1])
    rng = np.random.default_rng(seed)
    losses = []
    for t in (100, 300, 600, 900):
        for s in range(0, len(images), 64):
            latents = means[s:s + 64] * scale
            noise = torch.from_numpy(rng.standard_normal(tuple(latents.shape), np.float32))
            steps = torch.full((len(latents),), t)
            context = torch.cat([vision[s:s + 64], text[s:s + 64]], dim=1)
            pred = unet(c.scheduler.add_noise(latents, noise, steps), steps, encoder_hidden_states=context).sample
            losses.append(torch.nn.functional.mse_loss(pred, noise).item())
    revert_dual_unet(unet)
    return float(np.mean(losses))


@torch.no_grad()
def write_sheet(c: VersatileComponents, images: np.ndarray, captions: list[list[str]], path: Path) -> None:
    """Rows: the scenes, generated from their true features (seeds 0 and 100), their AutoKL round trips."""
    from PIL import Image

    from braindiff_app.atomic import atomic_path

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    round_trip = c.vae.decode(c.vae.encode(x).latent_dist.mean).sample
    round_trip = ((round_trip.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    kinds = [images, generate_from_true_features(c, images, captions, batch_size=25),
             generate_from_true_features(c, images, captions, seed=100, batch_size=25),
             round_trip]
    side = images.shape[1]
    sheet = np.full((len(kinds) * (side + 4) - 4, len(images) * (side + 4) - 4, 3), 255, np.uint8)
    for row, kind in enumerate(kinds):
        for col, image in enumerate(kind):
            sheet[row * (side + 4):row * (side + 4) + side, col * (side + 4):col * (side + 4) + side] = image
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(tmp, "PNG")


@torch.no_grad()
def identification(c: VersatileComponents, images: np.ndarray, captions: list[list[str]]) -> tuple[float, float]:
    """4-way and 2-way identification of images generated (no init) from the scenes' true features."""
    generated = generate_from_true_features(c, images, captions, batch_size=25)
    truth, rec = clip_image_embeddings(c, images), clip_image_embeddings(c, generated)
    return (float(n_way_identification(truth, rec, ways=4).mean()),
            float(n_way_identification(truth, rec, ways=2).mean()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=800, help="fine-tuning steps per lever (default 800)")
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated of {LEVERS}")
    parser.add_argument("--n-eval", type=int, default=100, help="held-out scenes for identification (default 100)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheet", type=Path, help="write the committed models' sheet of 16 held-out scenes and exit")
    args = parser.parse_args()
    levers = chosen_levers(parser, args, LEVERS)
    torch.set_num_threads(args.threads)
    folder = DEMO_ASSETS_DIR / "models" / "vd"
    if args.sheet:
        images, _, captions = render_scenes(16, seed=WORLD_SEED, size=64, start=EVAL_START)
        write_sheet(load_versatile_diffusion(folder, dtype=torch.float32), images, captions, args.sheet)
        print(f"wrote {args.sheet}")
        return 0
    train_images, _, train_captions = render_scenes(8000 if "scenes" in levers else 2000, seed=WORLD_SEED, size=64)
    held_images, _, held_captions = render_scenes(512, seed=WORLD_SEED, size=64, start=EVAL_START + 10_000)
    eval_images, _, eval_captions = render_scenes(args.n_eval, seed=WORLD_SEED, size=64, start=EVAL_START)
    config = dataclasses.replace(TrainConfig(), unet_tail_steps=args.steps)
    print(f"{args.steps} fine-tuning steps per lever (lr {config.unet_tail_lr}, EMA {config.unet_tail_ema}), "
          f"{args.threads} threads; identification among {args.n_eval} held-out scenes (chance 25% / 50%)")
    print(f"{'lever':<12} {'loss train':>10} {'loss held-out':>13} {'4-way':>7} {'2-way':>7} {'s/step':>7} "
          f"{'ratio':>6}")
    base_seconds = None
    for lever in levers:
        c = load_versatile_diffusion(folder, dtype=torch.float32)
        seconds = float("nan")
        if lever != "committed":
            if lever == "attention16":
                c = grow_attention16(c)
            n = 8000 if lever == "scenes" else 2000
            for module in (c.image_unet, c.text_unet):
                module.train().requires_grad_(True)
            start = time.perf_counter()
            _train_unet(c, train_images[:n], train_captions[:n], config, np.random.default_rng([0, 4]), False,
                        tail=True)
            seconds = (time.perf_counter() - start) / args.steps
            for module in (c.image_unet, c.text_unet):
                module.eval().requires_grad_(False)
            if base_seconds is None:
                base_seconds = seconds
        losses = (eps_loss(c, train_images[:512], train_captions[:512]), eps_loss(c, held_images, held_captions))
        four, two = identification(c, eval_images, eval_captions)
        ratio = seconds / base_seconds if base_seconds else float("nan")
        print(f"{lever:<12} {losses[0]:>10.4f} {losses[1]:>13.4f} {100 * four:>6.1f}% {100 * two:>6.1f}% "
              f"{seconds:>7.3f} {ratio:>6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What limits the demo AutoKL's round trip: its training length or its latent's size.

Every final image of the demo tier is decoded by the demo AutoKL, so its round trip (a seen scene encoded as stage 2
encodes its init image, the posterior mean, and decoded again, no UNet) is the ceiling of any UNet
(docs/legibility.md, "The AutoKL's own ceiling"). This bench trains AutoKL variants from scratch side by side in one
process, on the demo world's 2000 training scenes (world seed 1, as ``braindiff demo train-diffusion`` draws them),
with the loss and settings of ``braindiff demo train-diffusion``'s AutoKL stage (``TrainConfig.vae_*``):

- ``committed``: the committed AutoKL (``braindiff_app/assets/demo/models/vd``), no training (the baseline);
- ``retrain``: the same architecture (16x16x4 latent) trained from scratch for ``--steps`` steps;
- ``longer``: the same, for three times ``--steps``;
- ``latent8``: 8 latent channels instead of 4 (16x16x8), ``--steps`` steps.

For each it prints 4-way / 2-way identification of the round trips of ``--n-eval`` held-out scenes by the committed
demo CLIP (:func:`~braindiff_app.demo.train_vd.clip_image_embeddings`, as ``bench/unet_levers.py`` scores), the
mean absolute pixel error (0-255) and PixCorr of the round trips, and the seconds per training step with their
ratio to the first lever trained. Each trained lever gets a second row, "fp16": its weights rounded to float16
and back, as ``braindiff demo train-diffusion`` saves them (the committed AutoKL is stored so).

    python bench/autokl_levers.py --threads 2
    python bench/autokl_levers.py --levers committed,retrain --seed 1     # another draw of the same AutoKL
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._levers import chosen_levers  # noqa: E402
from braindiff_app.cli.train_diffusion import EVAL_START, WORLD_SEED  # noqa: E402
from braindiff_app.config import DEMO_ASSETS_DIR  # noqa: E402
from braindiff_app.demo.stimuli import render_scenes  # noqa: E402
from braindiff_app.demo.train_vd import TrainConfig, _train_vae, clip_image_embeddings  # noqa: E402
from braindiff_app.evaluation.identification import n_way_identification  # noqa: E402
from braindiff_app.evaluation.pixel import pixcorr  # noqa: E402
from braindiff_app.models.versatile import load_versatile_diffusion  # noqa: E402

LEVERS = ("committed", "retrain", "longer", "latent8")


def fresh_autokl(committed, latent_channels: int, seed: int = 0):
    """A randomly initialised AutoKL with the committed one's configuration but ``latent_channels``."""
    from diffusers import AutoencoderKL

    config = {k: v for k, v in committed.config.items() if not k.startswith("_")}
    torch.manual_seed(seed)
    return AutoencoderKL(**{**config, "latent_channels": latent_channels}).train()


def save_stage(vae, losses: list[float], work: Path) -> None:
    """``vae`` as ``work/vae.pt``, in the layout of ``braindiff demo train-diffusion``'s stage checkpoints (its
    UNet stage sets the latent scaling factor)."""
    from braindiff_app.atomic import atomic_path

    work.mkdir(parents=True, exist_ok=True)
    with atomic_path(work / "vae.pt") as tmp:
        torch.save({"weights": [vae.state_dict()], "losses": losses, "scaling_factor": 1.0}, tmp)


@torch.no_grad()
def round_trip(vae, images: np.ndarray, batch_size: int = 50) -> np.ndarray:
    """(n, H, W, 3) uint8 -> the AutoKL's decoded posterior mean, (n, H, W, 3) uint8."""
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1
        y = vae.decode(vae.encode(x).latent_dist.mean).sample
        out.append(((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=TrainConfig().vae_steps,
                        help=f"training steps per lever ('longer': three times; default {TrainConfig().vae_steps}, "
                             "as braindiff demo train-diffusion)")
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated of {LEVERS}")
    parser.add_argument("--n-eval", type=int, default=200, help="held-out scenes for identification (default 200)")
    parser.add_argument("--seed", type=int, default=0,
                        help="initialisation and batch-order draw of the trained levers (default 0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-stage", type=Path, metavar="WORK",
                        help="also write the 'retrain' lever's AutoKL as WORK/vae.pt, the AutoKL stage checkpoint "
                             "`braindiff demo train-diffusion --work WORK` resumes from (it then trains its UNet on "
                             "this AutoKL's latents)")
    args = parser.parse_args()
    levers = chosen_levers(parser, args, LEVERS)
    torch.set_num_threads(args.threads)
    c = load_versatile_diffusion(DEMO_ASSETS_DIR / "models" / "vd", dtype=torch.float32)
    train_images, _, _ = render_scenes(2000, seed=WORLD_SEED, size=64)
    eval_images, _, _ = render_scenes(args.n_eval, seed=WORLD_SEED, size=64, start=EVAL_START)
    truth = clip_image_embeddings(c, eval_images)
    print(f"AutoKL round trips of {args.n_eval} held-out scenes (chance 25% / 50%); {args.steps} training steps "
          f"('longer' {3 * args.steps}), batch {TrainConfig().vae_batch}, lr {TrainConfig().vae_lr}, "
          f"{args.threads} threads")
    print(f"{'lever':<10} {'latent':>8} {'4-way':>7} {'2-way':>7} {'MAE':>6} {'PixCorr':>8} {'s/step':>7} {'ratio':>6}")
    base_seconds = None
    for lever in levers:
        vae, seconds = c.vae, float("nan")
        if lever != "committed":
            vae = fresh_autokl(c.vae, 8 if lever == "latent8" else 4, seed=args.seed)
            steps = 3 * args.steps if lever == "longer" else args.steps
            start = time.perf_counter()
            losses = _train_vae(vae, train_images, replace(TrainConfig(), vae_steps=steps),
                                np.random.default_rng([args.seed, 2]), True)
            seconds = (time.perf_counter() - start) / steps
            vae.eval().requires_grad_(False)
            if lever == "retrain" and args.save_stage:
                save_stage(vae, losses, args.save_stage)
                print(f"wrote {args.save_stage / 'vae.pt'}")
            base_seconds = base_seconds or seconds
        ratio = seconds / base_seconds if base_seconds else float("nan")
        side = eval_images.shape[1] // 2 ** (len(vae.config.block_out_channels) - 1)
        latent = f"{side}x{side}x{vae.config.latent_channels}"
        rows = [(lever, vae, f"{seconds:>7.3f} {ratio:>6.2f}")]
        if lever != "committed":
            rows.append(("  fp16", copy.deepcopy(vae).half().float(), ""))
        for name, model, timing in rows:
            trips = round_trip(model, eval_images)
            rec = clip_image_embeddings(c, trips)
            four = float(n_way_identification(truth, rec, ways=4).mean())
            two = float(n_way_identification(truth, rec, ways=2).mean())
            mae = float(np.abs(trips.astype(np.float64) - eval_images).mean())
            corr = float(np.mean(pixcorr(eval_images, trips)))
            print(f"{name:<10} {latent:>8} {100 * four:>6.1f}% {100 * two:>6.1f}% {mae:>6.2f} {corr:>8.3f} {timing}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

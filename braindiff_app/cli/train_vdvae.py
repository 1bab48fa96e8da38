"""``braindiff demo train-vdvae``: train the demo VDVAE on the demo stimulus world and save its weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from braindiff_app.cli import add_settings_arguments, positive_int, settings_from_args

DEFAULTS = {"steps": 450, "batch_size": 32, "kl_warmup": 150, "n_images": 6000, "world_seed": 1000, "eval_images": 128}


def register(subparsers, demo_subparsers) -> None:
    parser = demo_subparsers.add_parser(
        "train-vdvae",
        help="train the small demo VDVAE on the demo stimulus world",
        description="Train VDVAEConfig.demo() on scenes of the demo stimulus world (a world seed distinct from "
        "the simulated subjects' world 0), then score encode -> decode of held-out world-0 scenes against the "
        "mean image (PixCorr, SSIM). Writes config.json, model.safetensors and train_report.json. Seeded; runs "
        "on the --device you pick (CPU by default is fine: about 20 minutes at the defaults on 2 cores).",
    )
    parser.add_argument("--out", help="output folder (default: the repo's assets/demo/models/vdvae)")
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="optimiser steps")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"])
    parser.add_argument("--n-images", type=int, default=DEFAULTS["n_images"], help="training scenes to render")
    parser.add_argument("--world-seed", type=int, default=DEFAULTS["world_seed"], help="stimulus world of training")
    parser.add_argument("--eval-images", type=int, default=DEFAULTS["eval_images"],
                        help="held-out scenes of world 0 for the report")
    parser.add_argument("--seed", type=int, default=0, help="initialisation, batch order and noise")
    parser.add_argument("--kl-warmup", type=int, default=DEFAULTS["kl_warmup"],
                        help="steps over which the KL weight rises from 0 to 1")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch

    from braindiff_app.atomic import atomic_write_json
    from braindiff_app.config import resolve_device
    from braindiff_app.demo.train_vdvae import reconstruction_scores, render_world_images, train_vdvae
    from braindiff_app.models.vdvae import VDVAE, VDVAEConfig, save_vdvae

    settings = settings_from_args(args)
    device = resolve_device(settings.device)
    out = Path(args.out) if args.out else settings.demo_models_dir / "vdvae"
    config = VDVAEConfig.demo()
    print(f"rendering {args.n_images} training scenes (world {args.world_seed}) and {args.eval_images} held-out")
    train_images = render_world_images(args.n_images, args.world_seed)
    held_out = render_world_images(args.eval_images, world_seed=0, start=100_000)
    torch.manual_seed(args.seed)
    model = VDVAE(config).to(device)
    start = time.perf_counter()
    result = train_vdvae(model, train_images, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         kl_warmup=args.kl_warmup, seed=args.seed)
    seconds = time.perf_counter() - start
    ema = result.model.cpu()
    save_vdvae(ema, out)
    baseline = train_images.mean(0).round().astype(np.uint8)
    scores = reconstruction_scores(ema, held_out, baseline)
    summary = {k: float(np.mean(v)) for k, v in scores.items()}
    tail = result.elbo[-50:]
    report = {
        "config": config.to_dict(),
        "n_parameters": int(sum(p.numel() for p in ema.parameters())),
        "n_latent": config.n_latent(),
        "latent_shapes": config.latent_shapes(),
        "train": {"steps": args.steps, "batch_size": args.batch_size, "n_images": args.n_images,
                  "world_seed": args.world_seed, "seed": args.seed, "lr": args.lr, "kl_warmup": args.kl_warmup,
                  "device": str(device),
                  "threads": torch.get_num_threads(), "seconds": round(seconds, 1),
                  "final_elbo_nats_per_dim": float(np.nanmean(tail)), "skipped_steps": result.n_skipped},
        "held_out": {"n_images": args.eval_images, "world_seed": 0, "first_index": 100_000,
                     "latents": "posterior means of the first n_latent_layers, rest from the prior (t=1)",
                     **summary},
    }
    atomic_write_json(out / "train_report.json", report)
    print(f"wrote {out} in {seconds:.0f} s; held-out PixCorr {summary['pixcorr']:.3f} "
          f"(mean image {summary['pixcorr_baseline']:.3f}), SSIM {summary['ssim']:.3f} "
          f"(mean image {summary['ssim_baseline']:.3f})")
    return 0

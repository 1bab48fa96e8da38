"""``braindiff demo train-diffusion``: train the demo Versatile Diffusion components on the demo stimulus world."""

from __future__ import annotations

import argparse
from pathlib import Path

from braindiff_app.cli import add_settings_arguments, settings_from_args

# Scenes the diffusion model learns from: world seed 1 (the simulated subject's images are drawn elsewhere);
# identification is measured on scenes far beyond the training range.
WORLD_SEED = 1
EVAL_START = 1_000_000


def register(subparsers, demo_subparsers) -> None:
    parser = demo_subparsers.add_parser(
        "train-diffusion",
        help="train the demo Versatile Diffusion models (CLIP encoders, AutoKL, dual UNet)",
        description="Train small models of Versatile Diffusion's classes on the demo stimulus world, save them "
        "(fp16, diffusers layout) to assets/demo/models/vd, and measure 2-way identification of images generated "
        "from ground-truth CLIP features. Seeded; resumes after the last finished stage (CLIP, AutoKL, UNet, then "
        "the UNet's low-rate tail). About 65 minutes on 2 CPU cores; uses a GPU if --device "
        "picks one.",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: assets/demo/models/vd)")
    parser.add_argument("--work", type=Path, help="stage checkpoints (default: <workspace>/train-diffusion)")
    parser.add_argument("--n-images", type=int, default=2000, help="training scenes (default 2000)")
    parser.add_argument("--n-eval", type=int, default=64, help="held-out scenes for identification (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every stage's number of steps (default 1.0; 0.05 for a smoke run)")
    for stage in ("clip", "vae", "unet"):
        parser.add_argument(f"--{stage}-steps", type=int, help=f"{stage} stage steps (overrides --steps-scale)")
    parser.add_argument("--latent-channels", type=int, choices=(4, 8), default=4,
                        help="channels of the AutoKL's latent (default 4, Versatile Diffusion's; 8 keeps more of the "
                        "seen image, measured by bench/autokl_levers.py, and needs its UNet trained anew)")
    parser.add_argument("--resume-from", type=Path,
                        help="a saved demo folder whose stages (CLIP, AutoKL, UNet and, if it has one, the UNet's "
                        "tail) stand in for the trained ones, so only the stages it lacks train")
    parser.add_argument("--unet-tail-steps", type=int,
                        help="steps of the last stage, the UNet trained on at a lower learning rate (overrides "
                        "--steps-scale; 0 skips it)")
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from braindiff_app.atomic import atomic_write_json
    from braindiff_app.config import resolve_device
    from braindiff_app.demo.stimuli import render_scenes
    from braindiff_app.demo.train_vd import TrainConfig, identification_from_features, stages_from_folder, train_demo_vd

    settings = settings_from_args(args)
    if args.n_images < 64 or args.n_eval < 2:
        raise ValueError(f"--n-images must be >= 64 and --n-eval >= 2, got {args.n_images} and {args.n_eval}.")
    out = args.out or settings.demo_models_dir / "vd"
    work = args.work or settings.workspace / "train-diffusion"
    base = TrainConfig(seed=args.seed, latent_channels=args.latent_channels)
    config = replace(base, **{k: getattr(args, k) or max(1, round(getattr(base, k) * args.steps_scale))
                              for k in ("clip_steps", "vae_steps", "unet_steps")},
                     unet_tail_steps=args.unet_tail_steps if args.unet_tail_steps is not None
                     else max(1, round(base.unet_tail_steps * args.steps_scale)))
    if args.resume_from is not None:
        written = stages_from_folder(args.resume_from, work)
        print(f"stages {', '.join(written) or 'none'} taken from {args.resume_from} into {work}")
    images, _, captions = render_scenes(args.n_images, seed=WORLD_SEED, size=64)
    device = resolve_device(settings.device)
    components = train_demo_vd(images, captions, out, work, config, device=device)
    eval_images, _, eval_captions = render_scenes(args.n_eval, seed=WORLD_SEED, size=64, start=EVAL_START)
    report = identification_from_features(components, eval_images, eval_captions)
    summary_path = Path(out) / "training.json"
    summary = json.loads(summary_path.read_text())
    summary["evaluation"] = report
    summary["world"] = {"seed": WORLD_SEED, "train_scenes": [0, args.n_images],
                        "eval_scenes": [EVAL_START, EVAL_START + args.n_eval]}
    atomic_write_json(summary_path, summary)
    print(f"saved {out}")
    print(json.dumps(report, indent=2))
    return 0

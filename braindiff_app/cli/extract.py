"""``braindiff extract vdvae``: the VDVAE latents of a prepared subject's images (contract 3 features)."""

from __future__ import annotations

import argparse

from braindiff_app.atomic import atomic_save_npy
from braindiff_app.cli import add_settings_arguments, settings_from_args

SPLITS = ("train", "test")


def extract_subparsers(subparsers):
    """The ``extract`` command's kinds (vdvae, clip): created by the first module that asks, then shared."""
    if "extract" not in subparsers.choices:
        parser = subparsers.add_parser(
            "extract",
            help="extract features of a prepared subject's images (vdvae, clip)",
            description="Compute the regression targets of a prepared subject's images and write them into the "
            "subject's features folder.",
        )
        parser.set_defaults(func=lambda args: _usage(parser))
        parser.kinds = parser.add_subparsers(dest="extract_kind", metavar="KIND")
    return subparsers.choices["extract"].kinds


def register(subparsers, demo_subparsers) -> None:
    kinds = extract_subparsers(subparsers)
    vdvae = kinds.add_parser(
        "vdvae",
        help="VDVAE latents of the first decoder layers (91168 values per image at imagenet64 settings)",
        description="Write vdvae_train.npy and vdvae_test.npy (float32, n_images x n_latent) and vdvae.json into "
        "the subject's features folder. The demo tier uses the committed demo VDVAE; the real tier the "
        "imagenet64 EMA checkpoint (--vdvae-checkpoint). A split whose file exists with the same model and "
        "options is skipped (rerun to resume; --overwrite to redo).",
    )
    vdvae.add_argument("--subject", required=True, help="subject number (1, 2, 5, 7)")
    vdvae.add_argument("--mode", choices=("mean", "sample"), default="mean",
                       help="posterior means (default, reproducible) or seeded posterior samples (the reference)")
    vdvae.add_argument("--seed", type=int, default=0, help="seed for --mode sample")
    vdvae.add_argument("--n-layers", type=int, default=None,
                       help="leading decoder layers to keep (default: the model's, 31 for imagenet64)")
    vdvae.add_argument("--batch-size", type=int, default=32)
    vdvae.add_argument("--overwrite", action="store_true", help="recompute splits that are already written")
    add_settings_arguments(vdvae)
    vdvae.set_defaults(func=run_vdvae)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_vdvae(args: argparse.Namespace) -> int:
    import json
    import platform

    import numpy as np
    import torch

    from braindiff_app import __version__
    from braindiff_app.atomic import atomic_write_json
    from braindiff_app.config import resolve_device, resolve_dtype
    from braindiff_app.models.vdvae import extract_latents, load_demo_vdvae, load_vdvae

    settings = settings_from_args(args)
    prepared = settings.subject_dir("prepared", args.subject)
    out = settings.subject_dir("features", args.subject)
    sources = {split: prepared / f"images_{split}.npy" for split in SPLITS}
    for path in sources.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: prepared images not found; run `braindiff prepare --subject "
                                    f"{args.subject}` first.")
    weights = settings.vdvae_path
    if weights is None:
        raise FileNotFoundError("VDVAE checkpoint not configured: set BRAINDIFF_VDVAE_CHECKPOINT or pass "
                                "--vdvae-checkpoint imagenet64-iter-1600000-model-ema.th.")
    model = load_demo_vdvae(weights) if settings.tier == "demo" else load_vdvae(weights)
    config = model.config
    n_layers = config.check_n_layers(args.n_layers)
    device = resolve_device(settings.device)
    # The VDVAE runs in float32 unless a dtype is asked for explicitly (its KL/mixture maths is precision-hungry).
    dtype = torch.float32 if settings.dtype == "auto" else resolve_dtype(settings.dtype, device)
    model = model.to(device=device, dtype=dtype)
    identity = {
        "model": config.name, "weights": str(weights), "config": config.to_dict(), "n_layers": n_layers,
        "mode": args.mode, "seed": args.seed if args.mode == "sample" else None, "dtype": str(dtype).split(".")[-1],
    }
    meta_path = out / "vdvae.json"
    previous = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    same = {k: previous.get(k) for k in identity} == identity
    out.mkdir(parents=True, exist_ok=True)
    if not same:
        atomic_write_json(meta_path, identity)  # written first, so an interrupted run resumes split by split
    counts = {}
    for split, source in sources.items():
        target = out / f"vdvae_{split}.npy"
        images = np.load(source, mmap_mode="r", allow_pickle=False)
        counts[split] = int(images.shape[0])
        if same and not args.overwrite and target.is_file():
            print(f"{target} exists with the same model and options; skipped (--overwrite to redo)")
            continue
        latents = extract_latents(model, images, n_layers=n_layers, mode=args.mode, seed=args.seed,
                                  batch_size=args.batch_size)
        atomic_save_npy(target, latents)
        print(f"wrote {target} {latents.shape}")
    atomic_write_json(meta_path, {
        **identity,
        "layer_shapes": [list(s) for s in config.latent_shapes(n_layers)],
        "n_latent": config.n_latent(n_layers),
        "n_images": counts,
        "image_size": config.image_size,
        "versions": {"braindiff": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    })
    return 0

"""``braindiff extract vdvae``: the VDVAE latents of a prepared subject's images."""

from __future__ import annotations

import argparse

from braindiff_app.cli import add_protocol_argument, add_settings_arguments, positive_int, settings_from_args
from braindiff_app.extraction import VDVAE_MODES


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
    vdvae.add_argument("--mode", choices=VDVAE_MODES, default=None,
                       help="posterior means (reproducible) or seeded posterior samples (the reference); default: "
                       "the protocol's (mean for braindiff, sample for reference)")
    vdvae.add_argument("--seed", type=int, default=0, help="seed for --mode sample")
    vdvae.add_argument("--n-layers", type=int, default=None,
                       help="leading decoder layers to keep (default: the model's, 31 for imagenet64)")
    vdvae.add_argument("--batch-size", type=positive_int, default=32)
    vdvae.add_argument("--overwrite", action="store_true", help="recompute splits that are already written")
    add_protocol_argument(vdvae)
    add_settings_arguments(vdvae)
    vdvae.set_defaults(func=run_vdvae)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_vdvae(args: argparse.Namespace) -> int:
    from braindiff_app.extraction import extract_vdvae_features

    extract_vdvae_features(settings_from_args(args), args.subject, mode=args.mode, seed=args.seed,
                           n_layers=args.n_layers, batch_size=args.batch_size, overwrite=args.overwrite,
                           progress=True, log=print, protocol=args.protocol)
    return 0

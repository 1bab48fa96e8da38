"""``braindiff extract clip``: CLIP-vision and CLIP-text token features of a prepared subject's stimuli."""

from __future__ import annotations

import argparse

from braindiff_app.cli import add_protocol_argument, add_settings_arguments, positive_int, settings_from_args
from braindiff_app.cli.extract import extract_subparsers


def register(subparsers, demo_subparsers) -> None:
    parser = extract_subparsers(subparsers).add_parser(
        "clip",
        help="CLIP-vision (n, 257, clip_dim) and CLIP-text (n, 77, clip_dim) features",
        description="Read the prepared subject's images_{train,test}.npy and captions_{train,test}.json, write "
        "clip_vision_{train,test}.npy and clip_text_{train,test}.npy (float32) and clip.json (model and library "
        "versions) into the subject's features folder. Uses the CLIP encoders inside the Versatile Diffusion "
        "folder of the tier (the demo tier's committed one; --vd-dir on the real tier), in float32 unless --dtype "
        "says otherwise. A "
        "split already written by the same model, dtype and transformers version is skipped (rerun to resume; "
        "--overwrite to redo); features made by anything else are recomputed.",
    )
    parser.add_argument("--subject", required=True, help="subject number (1, 2, 5, 7; demo: 1)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--overwrite", action="store_true", help="recompute splits that are already written")
    add_protocol_argument(parser)
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from braindiff_app.extraction import extract_clip_features

    extract_clip_features(settings_from_args(args), args.subject, batch_size=args.batch_size,
                          overwrite=args.overwrite, progress=True, log=print, protocol=args.protocol)
    return 0

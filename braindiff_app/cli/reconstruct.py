"""``braindiff reconstruct``: every test trial of a subject (or the subject average) into a bundle."""

from __future__ import annotations

import argparse
import sys

from braindiff_app.cli import add_protocol_argument, add_settings_arguments, positive_int, settings_from_args


def register(subparsers, demo_subparsers) -> None:
    from braindiff_app.cli._stage2 import add_stage2_arguments

    parser = subparsers.add_parser(
        "reconstruct",
        help="reconstruct a subject's test images into a bundle",
        description="Run the regressors, the VDVAE stage and the dual-guided diffusion stage (and the ablations "
        "asked for) on every test trial of a subject, writing a bundle the app browses. Resumable: rerun the "
        "same command after an interruption. For several GPUs: `accelerate launch -m braindiff_app reconstruct "
        "...` (one process per GPU).",
    )
    parser.add_argument("--subject", required=True, help="subject number (1, 2, 5, 7) or 'average' (the mean of "
                        "the features predicted by every subject with regressors)")
    parser.add_argument("--ablations", default="none", help="'all', 'none' (default) or a comma list of "
                        "no_vdvae, no_text, no_vision (the only-VDVAE guess is always stored)")
    parser.add_argument("--limit", type=int, help="only the first N test trials")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle of the same name made "
                        "with other settings (one made with the same settings and models is kept: it is up to date), "
                        "and start over a partial run made with other settings")
    parser.add_argument("--out", help="folder receiving the bundle (default <home>/bundles)")
    parser.add_argument("--seed", type=int, default=0, help="run seed; each trial's seed derives from it and "
                        "the trial's NSD id (default 0)")
    parser.add_argument("--rescale", default="transductive", choices=("transductive", "train", "none"),
                        help="re-scaling of predictions (default transductive, as the paper)")
    parser.add_argument("--features", default="predicted", choices=("predicted", "true"),
                        help="'predicted' (default): the subject's regressors read its test fMRI. 'true': the seen "
                        "test images' own features from `braindiff extract` (no fMRI, no regressors): the image "
                        "models' ceiling, in a bundle named <tier>-subjNN-true-features (NN: the subject)")
    add_stage2_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=8, help="trials per batch (default 8)")
    add_protocol_argument(parser)
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def parse_ablations(text: str) -> tuple[str, ...]:
    """``"all"`` / ``"none"`` / ``"no_vdvae,no_text"`` -> ablation kinds, checked."""
    from braindiff_app.bundles import ABLATION_KINDS
    from braindiff_app.config import check_in_allowed

    text = text.strip().lower()
    if text == "all":
        return ABLATION_KINDS
    if text in ("", "none"):
        return ()
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    for kind in kinds:
        check_in_allowed(kind, ABLATION_KINDS + ("all", "none"), "--ablations")
    return kinds


def run(args: argparse.Namespace) -> int:
    from braindiff_app.cli._stage2 import stage2_from_args
    from braindiff_app.reconstruct import reconstruct_subject

    settings = settings_from_args(args)
    try:
        path = reconstruct_subject(
            settings, args.subject, parse_ablations(args.ablations), limit=args.limit, overwrite=args.overwrite,
            out=args.out, seed=args.seed, rescale=args.rescale, stage2=stage2_from_args(args, settings.tier),
            batch_size=args.batch_size, protocol=args.protocol, features=args.features,
        )
    except FileExistsError as exc:
        print(f"braindiff reconstruct: {exc}", file=sys.stderr)
        return 1
    print(f"bundle ready: {path}")
    return 0

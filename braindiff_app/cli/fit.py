"""``braindiff fit``: fit a subject's three ridge regressors from prepared betas and extracted features."""

from __future__ import annotations

import argparse

from braindiff_app.cli import add_settings_arguments, settings_from_args
from braindiff_app.regression.workspace import FEATURE_NAMES


def register(subparsers, demo_subparsers) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="fit the VDVAE, CLIP-vision and CLIP-text regressors of a subject",
        description="Fit ridge regressors from the prepared training betas (/300, z-scored) to the extracted "
        "features: VDVAE latents, CLIP-vision (257 tokens) and CLIP-text (77 tokens), every token sharing one "
        "factorization. Writes <workspace>/regressors/subjXX/{vdvae,clip_vision,clip_text}.safetensors; targets "
        "already saved are skipped (use --overwrite to refit).",
    )
    parser.add_argument("--subject", required=True, help="subject number (1, 2, 5, 7) as prepared")
    parser.add_argument("--features", metavar="DIR", help="features folder (default <workspace>/features/subjXX)")
    parser.add_argument("--targets", nargs="+", choices=FEATURE_NAMES,
                        default=list(FEATURE_NAMES), help="which regressors (default all)")
    tiers = ("real tier: the paper's {paper:g}; demo tier: {paper:g} x training images / 8859, the same penalty per "
             "image")
    parser.add_argument("--alpha-vdvae", type=float, help="ridge alpha for VDVAE (" + tiers.format(paper=50000) + ")")
    parser.add_argument("--alpha-vision", type=float,
                        help="ridge alpha for CLIP-vision (" + tiers.format(paper=60000) + ")")
    parser.add_argument("--alpha-text", type=float,
                        help="ridge alpha for CLIP-text (" + tiers.format(paper=100000) + ")")
    parser.add_argument("--n-targets-batch", type=int, default=4096,
                        help="targets solved per batch: lower it to use less memory (default 4096)")
    parser.add_argument("--backend", choices=("auto", "numpy", "torch"), default="auto",
                        help="auto: torch on a GPU when --device resolves to one, else numpy")
    parser.add_argument("--low-rank", type=int, metavar="R",
                        help="save rank-R weights instead of dense ones (smaller; fidelity is printed)")
    parser.add_argument("--overwrite", action="store_true", help="refit regressors whose file exists")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from braindiff_app.regression.subject import fit_subject

    settings = settings_from_args(args)
    backend, device = args.backend, None
    if backend != "numpy":
        from braindiff_app.config import resolve_device

        resolved = resolve_device(settings.device)
        if backend == "torch" or resolved.type == "cuda":
            backend, device = "torch", resolved
        else:
            backend = "numpy"
    features = args.features or settings.subject_dir("features", args.subject)
    given = {"vdvae": args.alpha_vdvae, "clip_vision": args.alpha_vision, "clip_text": args.alpha_text}
    report = fit_subject(
        settings.subject_dir("prepared", args.subject), features, settings.subject_dir("regressors", args.subject),
        alphas={name: alpha for name, alpha in given.items() if alpha is not None}, tier=settings.tier,
        targets=tuple(args.targets), low_rank=args.low_rank, overwrite=args.overwrite, log=print,
        n_targets_batch=args.n_targets_batch, backend=backend, device=device,
        progress=not args.no_progress,
    )
    for name, entry in report.items():
        if entry["status"] == "exists":
            print(f"{name}: {entry['path']} exists (skipped; --overwrite refits)")
    return 0

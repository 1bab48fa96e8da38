"""``braindiff evaluate BUNDLE...``: the paper's metrics into each bundle, then tables and plots."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from braindiff_app.cli import add_protocol_argument, add_settings_arguments, positive_int, settings_from_args
from braindiff_app.evaluation.registry import METRICS

METRICS_HELP = ", ".join(f"'{m}'" if " " in m else m for m in METRICS) + (
    " (SSIM is the standard 2-D one, SSIM-ref the reference's per-column variant; the 4-way ones give the "
    "classroom quiz's odds)")


def register(subparsers, demo_subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compute the paper's metrics for bundles and write summary tables and plots",
        description="For every image kind of each bundle (final and ablations), compute per-trial metrics "
        "against the seen images and store them in the bundle's metrics.json (resumable: stored metrics are "
        "kept unless --overwrite). Then write Table-1 (subjects and average) and Table-2 (ablations) summaries "
        "as markdown and CSV, and bar and distribution plots, into --out. Network weights are read from "
        "--eval-weights (default torch hub's checkpoints folder) under torchvision's file names; metrics whose "
        "file is missing are skipped with a message naming the file. Nothing is downloaded unless --download.",
    )
    parser.add_argument("bundles", nargs="+", metavar="BUNDLE",
                        help="bundle folder, or the name of a bundle in the bundle folders")
    parser.add_argument("--metrics", nargs="+", metavar="METRIC",
                        help=f"metrics to compute (default: all available). Names: {METRICS_HELP}")
    parser.add_argument("--kinds", nargs="+", metavar="KIND",
                        help="image kinds to evaluate (default: every kind but ground_truth)")
    parser.add_argument("--out", help="folder for tables and plots (default: <home>/reports)")
    parser.add_argument("--download", action="store_true",
                        help="download missing network weights from torchvision's / SwAV's addresses into "
                        "--eval-weights first (network access; never done otherwise)")
    parser.add_argument("--overwrite", action="store_true", help="recompute metrics already stored")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the baseline rows (flat mean colour, training mean image, low-pass seen image at "
                        "the "
                        "VDVAE's resolution), stored as extra kinds in metrics.json; computed unless --kinds is given")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per network pass (default 32)")
    add_protocol_argument(parser)
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def _resolve_bundle(text: str, settings) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    found = [folder / text for folder in settings.bundle_dirs if (folder / text).is_dir()]
    if len(found) > 1:  # a bare name means the first folder's bundle, as in the app (ui/state.py)
        print(f"note: {text} is in {len(found)} folders ({', '.join(str(f.parent) for f in found)}); evaluating "
              f"{found[0]}: pass a bundle's path to choose another.")
    if found:
        return found[0]
    raise FileNotFoundError(f"{text}: no such bundle folder, and no bundle of that name in "
                            f"{', '.join(str(d) for d in settings.bundle_dirs)}.")


def _train_images(settings, bundle):
    """The bundle's subject's prepared training images (memory-mapped), or None where there are none."""
    import numpy as np

    try:
        path = settings.subject_dir("prepared", bundle.subject) / "images_train.npy"
    except ValueError:
        return None
    return np.load(path, mmap_mode="r") if path.exists() else None


def run(args: argparse.Namespace) -> int:
    from braindiff_app.bundles import open_bundle
    from braindiff_app.config import resolve_device
    from braindiff_app.evaluation import (
        BACKBONES,
        PIXEL_METRICS,
        backbones_from_settings,
        check_metrics,
        download_weights,
        evaluate_baselines,
        evaluate_bundle,
        write_report,
    )

    settings = settings_from_args(args)
    wanted = check_metrics(args.metrics, "--metrics")
    paths = [_resolve_bundle(b, settings) for b in args.bundles]
    bundles = [open_bundle(p) for p in paths]
    made_with = {b.name: b.manifest.settings.get("protocol", "braindiff") for b in bundles}
    other = {name: p for name, p in made_with.items() if p != args.protocol}
    if other:  # the metrics themselves are computed the same way under both protocols (docs/reproduce.md)
        print(f"note: --protocol {args.protocol}, but bundle(s) made with another protocol: "
              + ", ".join(f"{name} ({p})" for name, p in other.items()))
    if args.download:
        names = [n for n, spec in BACKBONES.items() if any(m in wanted for m in spec.metrics)]
        for path in download_weights(settings.eval_weights, names):
            print(f"downloaded {path}")
    backbones = None
    if any(m not in PIXEL_METRICS for m in wanted):
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            backbones = backbones_from_settings(settings, wanted)
        for message in sorted(set(backbones.missing.values())):
            print(f"skipped: {message}")
        backbones.to(resolve_device(settings.device))
    metrics = None
    if args.metrics is not None:  # CLIP and demo-CLIP both mean "the CLIP encoder the settings give"
        clip = backbones.clip_metric if backbones is not None else "CLIP"
        same = {"CLIP": clip, "demo-CLIP": clip, "CLIP 4-way": f"{clip} 4-way", "demo-CLIP 4-way": f"{clip} 4-way"}
        metrics = list(dict.fromkeys(same.get(m, m) for m in wanted))
    for bundle in bundles:
        computed = evaluate_bundle(bundle, backbones, metrics=metrics, kinds=args.kinds,
                                   overwrite=args.overwrite, batch_size=args.batch_size)
        done = sorted({m for table in computed.values() for m in table})
        print(f"{bundle.name}: {', '.join(done) if done else 'all requested metrics already stored'}")
        if not args.no_baselines and args.kinds is None:  # --kinds picks kinds: baselines only with all
            train = _train_images(settings, bundle)
            if train is None:
                print(f"{bundle.name}: no prepared training images; the mean baselines use the test images' mean")
            baselines = evaluate_baselines(bundle, backbones, metrics=metrics, train_images=train,
                                           overwrite=args.overwrite, batch_size=args.batch_size)
            if baselines:
                print(f"{bundle.name}: baselines ({', '.join(baselines)})")
    out = Path(args.out).expanduser() if args.out else settings.home / "reports"
    written = write_report([open_bundle(p) for p in paths], out)
    print((out / "table1.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0

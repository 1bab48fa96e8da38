"""``braindiff bundles``: the bundles the app would browse, and the folders that could not be opened."""

from __future__ import annotations

import argparse
from pathlib import Path

from braindiff_app.cli import add_settings_arguments, settings_from_args


def register(subparsers, demo_subparsers) -> None:
    parser = subparsers.add_parser(
        "bundles",
        help="list the bundles the app would browse",
        description="List every bundle the app would browse (the shipped ones, $BRAINDIFF_HOME/bundles, "
        "BRAINDIFF_BUNDLES and any --bundles folder): name, subject, tier, trials, image kinds, metrics and "
        "folder; then each folder that looked like a bundle but could not be opened, with the reason.",
    )
    parser.add_argument("--bundles", action="append", default=[],
                        help="extra folder of bundles (repeatable; also BRAINDIFF_BUNDLES)")
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from braindiff_app.bundles import find_bundles

    settings = settings_from_args(args)
    if args.bundles:
        settings = settings.with_overrides(
            extra_bundle_dirs=settings.extra_bundle_dirs + tuple(Path(b).expanduser() for b in args.bundles))
    bundles, problems = find_bundles(settings.bundle_dirs)
    print("bundle folders: " + ", ".join(str(d) for d in settings.bundle_dirs))
    print(f"{len(bundles)} bundle(s)" + (":" if bundles else "; write one with `braindiff reconstruct` or "
                                         "`braindiff demo build`."))
    for bundle in bundles:
        source = " (from true features: the image models' ceiling)" if not bundle.decoded else ""
        print(f"  {bundle.name}  subject {bundle.subject}{source}  tier {bundle.tier}  {bundle.n_trials} trials  "
              f"metrics: {_metric_names(bundle)}  kinds: {', '.join(bundle.kinds)}")
        print(f"      {bundle.path}")
    if problems:
        print(f"{len(problems)} folder(s) could not be opened:")
        for problem in problems:
            print(f"  {problem}")
    return 0


def _metric_names(bundle) -> str:
    """The metrics stored for any kind, or why there are none."""
    try:
        metrics = bundle.metrics
    except ValueError as exc:  # a damaged metrics.json: say so, and keep listing
        return f"unreadable ({exc})"
    names = dict.fromkeys(name for table in metrics.values() for name in table)
    return ", ".join(names) if names else "none"

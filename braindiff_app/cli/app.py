"""``braindiff app``: start the Gradio app (``python app.py`` runs the same command)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from braindiff_app.cli import add_settings_arguments, settings_from_args


def register(subparsers, demo_subparsers) -> None:
    parser = subparsers.add_parser(
        "app",
        help="start the app (http://127.0.0.1:7860), on the embedded demo by default",
        description="Start the braindiff app: Browse, ROI studio, Brain response, Metrics, Classroom and About. It "
                    "browses the shipped bundles, $BRAINDIFF_HOME/bundles and any --bundles folder; it needs no GPU "
                    "and no network.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="ask for this login (also BRAINDIFF_AUTH); advised with --share or a non-local --host")
    parser.add_argument("--bundles", action="append", default=[],
                        help="extra folder of bundles (repeatable; also BRAINDIFF_BUNDLES)")
    add_settings_arguments(parser)
    # A server: without --threads, torch leaves one core to the requests served while the ROI studio computes (on
    # 2 cores, a batch of 8 demo images took 1.2 CPU-s with 1 thread against 2.0 with 2: bench/load.py).
    parser.set_defaults(func=run, reserve_cores=1)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import sys
    import warnings

    from braindiff_app.ui import build_app, launch_app, parse_auth

    auth = parse_auth(args.auth if args.auth is not None else os.environ.get("BRAINDIFF_AUTH"))
    settings = settings_from_args(args)
    if args.bundles:
        settings = settings.with_overrides(
            extra_bundle_dirs=settings.extra_bundle_dirs + tuple(Path(b).expanduser() for b in args.bundles))
    app, _, _ = build_app(settings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        launch_app(app, settings, host=args.host, port=args.port, share=args.share, auth=auth, block=False)
    for warning in caught:  # the non-local serving warning, printed where the user looks
        if "without authentication" in str(warning.message):
            print(f"warning: {warning.message}", file=sys.stderr)
    app.block_thread()
    return 0

"""``braindiff doctor``: which tiers and features are usable here, and what is missing where."""

from __future__ import annotations

import argparse

from braindiff_app.cli import add_settings_arguments, settings_from_args


def register(subparsers, demo_subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check which tiers and features can run here",
        description="List each feature (demo and real tier) with the files it needs: found, or the exact "
        "path expected and what it is. Looks at files only; loads and downloads nothing.",
    )
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from braindiff_app.doctor import diagnose, format_report

    settings = settings_from_args(args)
    print(format_report(diagnose(settings), settings))
    return 0

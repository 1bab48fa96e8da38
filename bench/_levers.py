"""What the lever benches share: choosing levers on the command line."""

from __future__ import annotations

import argparse


def chosen_levers(parser: argparse.ArgumentParser, args: argparse.Namespace, known: tuple[str, ...]) -> list[str]:
    """``args.levers`` (comma-separated) as a list; a parser error naming what is wrong, ``--levers`` (unknown
    names), ``--steps`` (< 1) or ``--n-eval`` (< 4)."""
    levers = [lever for lever in args.levers.split(",") if lever]
    unknown = sorted(set(levers) - set(known))
    if unknown:
        parser.error(f"--levers: unknown {', '.join(unknown)}; expected names among {', '.join(known)}")
    if args.steps < 1 or args.n_eval < 4:
        parser.error(f"--steps must be >= 1 and --n-eval >= 4, got {args.steps} and {args.n_eval}")
    return levers

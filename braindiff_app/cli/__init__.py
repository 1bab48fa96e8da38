"""The ``braindiff`` command line: one entry point, one module per subcommand.

Each module in ``COMMANDS`` exposes ``register(subparsers, demo_subparsers)``, adding its parser(s) and setting
``func`` (called with the parsed namespace, returning an exit code). Heavy imports happen inside ``func`` so that
``braindiff --help`` stays fast.

Errors a user can fix (a missing file, a wrong value) are printed as one line; ``--debug`` (or
``BRAINDIFF_DEBUG=1``) prints the full traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings

from braindiff_app import __version__
from braindiff_app.config import DTYPES, TIERS, set_cpu_threads

__all__ = ["add_protocol_argument", "build_parser", "main", "positive_int"]

# Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ("app", "doctor", "bundles", "demo_data", "prepare", "extract", "extract_clip", "fit", "reconstruct",
            "evaluate", "roi", "encoder", "demo_build", "train_vdvae", "train_diffusion")


def positive_int(value: str) -> int:
    """argparse ``type`` for counts such as ``--batch-size``: a whole number >= 1 (0 or -2 said at once, not as
    ``range() arg 3 must not be zero`` after the models have loaded)."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return number


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags that override :func:`braindiff_app.config.load_settings` (each also an env variable)."""
    group = parser.add_argument_group("settings (override BRAINDIFF_* environment variables)")
    group.add_argument("--home", help="workspace folder (BRAINDIFF_HOME, default ~/.braindiff)")
    group.add_argument("--tier", choices=TIERS, help="demo (simulated subject) or real (NSD)")
    group.add_argument("--nsd-root", dest="nsd_root", help="local NSD copy (BRAINDIFF_NSD_ROOT)")
    group.add_argument("--vdvae-checkpoint", dest="vdvae_checkpoint", help="VDVAE imagenet64 EMA .th file (real tier)")
    group.add_argument("--vd-dir", dest="vd_dir", help="Versatile Diffusion folder in diffusers layout (real tier)")
    group.add_argument("--eval-weights", dest="eval_weights", help="folder of evaluation backbone weights")
    group.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (BRAINDIFF_DEVICE)")
    group.add_argument("--dtype", choices=DTYPES, help="compute dtype")
    group.add_argument("--threads", type=int, help="torch CPU threads (default: the cores that the machine's other "
                       "work leaves free, from the load average)")
    _add_debug(group)


def add_protocol_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--protocol {braindiff,reference}`` (see :mod:`braindiff_app.protocol` and docs/reproduce.md)."""
    from braindiff_app.protocol import DEFAULT_PROTOCOL, PROTOCOLS

    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default=DEFAULT_PROTOCOL,
                        help="procedure: 'braindiff' (default, the project's choices) or 'reference' (the paper's "
                        "code, item by item; docs/reproduce.md)")


def _add_debug(parser) -> None:
    # SUPPRESS: the flag may stand before or after the subcommand without one overwriting the other.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the full traceback of an error (also BRAINDIFF_DEBUG=1)")


def settings_from_args(args: argparse.Namespace):
    """Resolve :class:`~braindiff_app.config.Settings` from parsed flags (unset flags fall through)."""
    from braindiff_app.config import load_settings

    keys = ("home", "tier", "nsd_root", "vdvae_checkpoint", "vd_dir", "eval_weights", "device", "dtype")
    return load_settings(**{k: getattr(args, k, None) for k in keys})


def build_parser() -> argparse.ArgumentParser:
    """Build the ``braindiff`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="braindiff",
        description="Brain-Diffuser: reconstruct the images a person saw from their fMRI activity.",
    )
    parser.add_argument("--version", action="version", version=f"braindiff {__version__}")
    _add_debug(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = subparsers.add_parser("demo", help="the embedded demo tier: simulate, train, build")
    demo_subparsers = demo.add_subparsers(dest="demo_command", metavar="DEMO_COMMAND")
    demo.set_defaults(func=lambda args: _print_help(demo))
    for name in COMMANDS:
        importlib.import_module(f"braindiff_app.cli.{name}").register(subparsers, demo_subparsers)
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        return _print_help(parser)
    debug = getattr(args, "debug", False) or os.environ.get("BRAINDIFF_DEBUG", "").strip() not in ("", "0")
    default_format = warnings.formatwarning
    if not debug:  # a warning is one line, as an error is (Python's default adds the source file and line)
        warnings.formatwarning = _one_line_warning
    try:
        set_cpu_threads(getattr(args, "threads", None), reserve=getattr(args, "reserve_cores", 0))
        return int(args.func(args) or 0)
    except Exception as exc:  # the one boundary where any error becomes a message and an exit code
        expected = isinstance(exc, (FileNotFoundError, ValueError, TypeError, ImportError, RuntimeError, OSError))
        if debug:
            traceback.print_exc()
        if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:  # e.g. --out naming a file
            exc = f"{exc.filename}: a file is in the way where a folder is needed ({exc.strerror}); choose another " \
                  "output folder (--out), or move that file"
        kind = "" if expected else f"{type(exc).__name__}: "
        hint = "" if expected or debug else " (an unexpected error: rerun with --debug for the traceback)"
        print(f"braindiff {args.command}: error: {kind}{exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume where it stopped.", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format  # main() called from Python leaves the process as it found it


if __name__ == "__main__":
    sys.exit(main())

"""The ``braindiff`` command line: one entry point, one module per subcommand.

Each module in ``COMMANDS`` exposes ``register(subparsers, demo_subparsers)``, adding its parser(s) and setting
``func`` (called with the parsed namespace, returning an exit code). Heavy imports happen inside ``func`` so that
``braindiff --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from braindiff_app import __version__

__all__ = ["build_parser", "main"]

# Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ("doctor", "demo_data", "prepare", "extract", "extract_clip", "fit", "reconstruct", "evaluate", "roi",
            "demo_build", "train_vdvae", "train_diffusion")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags that override :func:`braindiff_app.config.load_settings` (each also an env variable)."""
    group = parser.add_argument_group("settings (override BRAINDIFF_* environment variables)")
    group.add_argument("--home", help="workspace folder (BRAINDIFF_HOME, default ~/.braindiff)")
    group.add_argument("--tier", choices=("demo", "real"), help="demo (simulated subject) or real (NSD)")
    group.add_argument("--nsd-root", dest="nsd_root", help="local NSD copy (BRAINDIFF_NSD_ROOT)")
    group.add_argument("--vdvae-checkpoint", dest="vdvae_checkpoint", help="VDVAE imagenet64 EMA .th file")
    group.add_argument("--vd-dir", dest="vd_dir", help="Versatile Diffusion folder in diffusers layout")
    group.add_argument("--eval-weights", dest="eval_weights", help="folder of evaluation backbone weights")
    group.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (BRAINDIFF_DEVICE)")
    group.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), help="compute dtype")
    group.add_argument("--threads", type=int, help="torch CPU threads (default: the cores that the machine's other "
                       "work leaves free, from the load average)")


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


def auto_threads(cores: int, load: float) -> int:
    """CPU threads to use: the cores that other work leaves free (at least one).

    Small models slow down several-fold when their threads compete with other processes for the cores (measured:
    the demo reconstruction ran 10x slower with 2 threads than with 1 on a 2-core machine running other work,
    and 1.3x faster on an idle one).

    Parameters
    ----------
    cores : int
        Threads torch would use by default (one per physical core).
    load : float
        The machine's 1-minute load average (processes wanting a core).
    """
    return max(1, cores - int(load + 0.5))


def _set_threads(threads: int | None) -> None:
    """Apply ``--threads``, or pick :func:`auto_threads` unless OMP_NUM_THREADS says already."""
    if threads is not None and threads < 1:
        raise ValueError(f"--threads: expected a positive count, got {threads}.")
    if threads is None:
        if os.environ.get("OMP_NUM_THREADS") or not hasattr(os, "getloadavg"):
            return
        threads = auto_threads(os.cpu_count() or 1, os.getloadavg()[0])
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:  # read by torch (and the BLAS) when the command imports them; keeps `--help` free of a torch import
        os.environ["OMP_NUM_THREADS"] = str(threads)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        return _print_help(parser)
    try:
        _set_threads(getattr(args, "threads", None))
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, TypeError, ImportError, RuntimeError) as exc:
        print(f"braindiff {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume where it stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

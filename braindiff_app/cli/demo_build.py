"""``braindiff demo build``: the whole demo tier from nothing, as the sequence of the ordinary commands.

Each step is a ``braindiff`` command line run in this process (so the demo is built exactly as a user would build
their own data), and each of those commands resumes where it stopped, so rerunning ``demo build`` after a stop
continues. Steps: simulate the NSD-shaped subjects -> (train the demo models, only with --retrain) -> prepare ->
extract VDVAE and CLIP features -> fit the regressors (the demo tier's alphas: the paper's scaled to its 1500 training
images, the same penalty per image) -> reconstruct every test trial of the four subjects and
their average with all ablations into ``precomputed/`` -> reconstruct subject 1's test images from their true
features, with and without the VDVAE guess (the image models' ceiling, a row of Table 1) -> evaluate -> export the
ROI studio's compact assets ->
write the measured tables into the docs that quote them (README.md's Table 1 and Table 2, between
``<!-- braindiff:NAME -->`` markers), so no number there is edited by hand.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from braindiff_app.cli import add_settings_arguments, positive_int, settings_from_args

SUBJECTS = ("1", "2", "5", "7")
#: Generated blocks of the docs: marker name -> the report file (under the report folder) whose table fills it.
DOC_TABLES = {"table1": "table1.md", "table2": "table2_demo-average.md"}


def register(subparsers, demo_subparsers) -> None:
    register_export(subparsers, demo_subparsers)
    parser = demo_subparsers.add_parser(
        "build",
        help="build the whole demo tier (data, features, regressors, bundles, ROI assets)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--retrain", action="store_true",
                        help="retrain the small VDVAE and diffusion models instead of using the committed weights")
    parser.add_argument("--out", help="bundle folder (default: the repo's precomputed/)")
    parser.add_argument("--n-test", type=int, default=100, help="shared test images (default 100)")
    parser.add_argument("--n-train", type=int, default=1500, help="training images per subject (default 1500)")
    parser.add_argument("--limit", type=int, help="reconstruct only the first N test trials (quick look)")
    parser.add_argument("--batch-size", type=positive_int, default=50,
                        help="trials per reconstruction batch (default 50)")
    parser.add_argument("--roi-rank", type=int, default=32,
                        help="rank of the compact regressors exported for the ROI studio (default 32)")
    parser.add_argument("--docs", nargs="*", default=None,
                        help="markdown files whose generated tables are rewritten from the report (default: the "
                        "repository's README.md when braindiff runs from a checkout; none given: no file)")
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def steps(args: argparse.Namespace, settings) -> list[tuple[str, list[str]]]:
    """The command lines of the build, in order, each labelled."""
    from braindiff_app.config import PRECOMPUTED_DIR
    from braindiff_app.reconstruct import bundle_name

    threads = ["--threads", str(args.threads)] if getattr(args, "threads", None) else []
    common = ["--home", str(settings.home), "--tier", "demo", *threads]
    out = str(args.out or PRECOMPUTED_DIR)
    plan: list[tuple[str, list[str]]] = [
        ("simulate the subjects", ["demo", "simulate", "--out", str(settings.nsd_dir), "--n-test", str(args.n_test),
                                   "--n-train", str(args.n_train), *common]),
    ]
    if args.retrain:
        plan += [("train the demo VDVAE", ["demo", "train-vdvae", *common]),
                 ("train the demo diffusion models", ["demo", "train-diffusion", *common])]
    for s in SUBJECTS:
        plan += [
            (f"prepare subject {s}", ["prepare", "--subject", s, *common]),
            (f"VDVAE features, subject {s}", ["extract", "vdvae", "--subject", s, *common]),
            (f"CLIP features, subject {s}", ["extract", "clip", "--subject", s, *common]),
            (f"fit regressors, subject {s}", ["fit", "--subject", s, *common]),
        ]
    limit = ["--limit", str(args.limit)] if args.limit else []
    for s in (*SUBJECTS, "average"):
        plan.append((f"reconstruct subject {s}", ["reconstruct", "--subject", s, "--ablations", "all",
                                                  "--batch-size", str(args.batch_size),
                                                  "--overwrite", "--out", out, *limit, *common]))
    plan.append(("reconstruct subject 1 from true features (the image models' ceiling)",
                 ["reconstruct", "--subject", SUBJECTS[0], "--features", "true", "--ablations", "no_vdvae",
                  "--batch-size", str(args.batch_size), "--overwrite", "--out", out, *limit, *common]))
    names = [*(bundle_name(settings, s) for s in (*SUBJECTS, "average")), bundle_name(settings, SUBJECTS[0], "true")]
    plan.append(("evaluate the bundles", ["evaluate", *(f"{out}/{n}" for n in names),
                                          "--out", f"{out}/report", *common]))
    plan.append(("export the ROI studio's assets", ["demo", "export-roi", "--rank", str(args.roi_rank), *common]))
    return plan


def run(args: argparse.Namespace) -> int:
    from braindiff_app.cli import main

    settings = settings_from_args(args).with_overrides(tier="demo")
    plan = steps(args, settings)
    threads = os.environ.get("OMP_NUM_THREADS", "torch's default")
    print(f"CPU threads: {threads} (--threads to choose; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs)" if hasattr(os, "getloadavg") else f"CPU threads: {threads}")
    start = time.perf_counter()
    for i, (label, argv) in enumerate(plan, 1):
        print(f"\n[{i}/{len(plan)}] {label}: braindiff {' '.join(argv)}", flush=True)
        step_start = time.perf_counter()
        code = main(argv)
        if code:
            print(f"demo build stopped at step {i} ({label}); fix the error above and rerun `braindiff demo build` "
                  "to continue from there.", file=sys.stderr)
            return code
        print(f"    done in {time.perf_counter() - step_start:.0f} s", flush=True)
    from braindiff_app.config import PRECOMPUTED_DIR

    report = Path(args.out or PRECOMPUTED_DIR) / "report"
    docs = [Path(d) for d in args.docs] if args.docs is not None else _default_docs()
    for doc in docs:
        written = write_doc_tables(doc, report)
        print(f"{doc}: tables {', '.join(written) or 'none (no braindiff markers)'} rewritten from {report}")
    print(f"\ndemo build finished in {(time.perf_counter() - start) / 60:.1f} min.")
    return 0


def _default_docs() -> list[Path]:
    from braindiff_app.config import PACKAGE_DIR

    readme = PACKAGE_DIR.parent / "README.md"
    return [readme] if (PACKAGE_DIR.parent / "pyproject.toml").is_file() and readme.is_file() else []


def write_doc_tables(doc: Path, report: Path) -> list[str]:
    """Rewrite each generated block of ``doc`` with the table of its report file.

    A block is the text between ``<!-- braindiff:NAME -->`` and ``<!-- /braindiff:NAME -->``; NAME is a key of
    :data:`DOC_TABLES`. The report file's heading line is left out. The file is rewritten atomically.

    Returns
    -------
    list of str
        The names of the blocks rewritten (blocks absent from ``doc`` are skipped).

    Raises
    ------
    FileNotFoundError
        ``doc`` or a needed report file is missing.
    """
    from braindiff_app.atomic import atomic_write_bytes

    text = doc.read_text(encoding="utf-8")
    written = []
    for name, file in DOC_TABLES.items():
        pattern = re.compile(rf"(<!-- braindiff:{name} -->\n).*?(<!-- /braindiff:{name} -->)", re.S)
        if not pattern.search(text):
            continue
        source = report / file
        if not source.is_file():
            raise FileNotFoundError(f"{source}: report table missing; run `braindiff evaluate` (or the whole "
                                    "`braindiff demo build`) first.")
        table = "\n".join(line for line in source.read_text(encoding="utf-8").splitlines()
                          if not line.startswith("#")).strip()
        text = pattern.sub(lambda m, table=table: f"{m.group(1)}{table}\n{m.group(2)}", text)
        written.append(name)
    if written:
        atomic_write_bytes(doc, text.encode("utf-8"))
    return written


def register_export(subparsers, demo_subparsers) -> None:
    parser = demo_subparsers.add_parser(
        "export-roi",
        help="store the ROI studio's compact demo workspace in assets/demo/home",
        description="Copy each demo subject's ROI files and voxel order and its regressors in low-rank form (rank "
        "--rank) from the demo workspace into assets/demo/home, which the app uses when you have no demo "
        "regressors of your own. Prints each regressor's relative prediction error.",
    )
    parser.add_argument("--rank", type=int, default=32, help="rank of the stored regressors (default 32)")
    add_settings_arguments(parser)
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from braindiff_app.config import DEMO_ROI_HOME
    from braindiff_app.demo.export import export_roi_workspace

    settings = settings_from_args(args).with_overrides(tier="demo")
    errors = export_roi_workspace(settings, rank=args.rank)
    for key, value in errors.items():
        print(f"{key}: relative prediction error at rank {args.rank}: {value:.3f}")
    print(f"wrote {DEMO_ROI_HOME}")
    return 0

"""``braindiff demo anatomy | simulate | flatmap-figure``: the demo tier's simulated subject."""

from __future__ import annotations

import argparse
import json
import time

from braindiff_app.cli import add_settings_arguments, settings_from_args


def register(subparsers, demo_subparsers) -> None:
    anatomy = demo_subparsers.add_parser(
        "anatomy",
        help="rebuild assets/demo/anatomy from pycortex's subject S1 (needs pycortex)",
        description="Turn pycortex's bundled subject S1 into the demo anatomy: a voxel grid with V1-V3, faces, "
        "places and bodies ROIs, an nsdgeneral-like mask, a simulated retinotopic map, a flatmap image and a "
        "pixel -> voxel lookup. Needs `pip install -r requirements-anatomy.txt`; the app and the simulator "
        "read only the files written here. pycortex writes its config under XDG_CONFIG_HOME (a temporary "
        "folder when unset).",
    )
    anatomy.add_argument("--out", help="output folder (default: assets/demo/anatomy)")
    anatomy.add_argument("--flatmap-width", type=int, default=900, help="flatmap image width, pixels (900)")
    anatomy.set_defaults(func=run_anatomy)

    simulate = demo_subparsers.add_parser(
        "simulate",
        help="write simulated subjects 1, 2, 5, 7 as an NSD-shaped folder",
        description="Simulate the demo subjects (stimulus world + encoding model on the demo anatomy) and write "
        "them in NSD's layout: experimental design, int16 beta NIfTIs per session, ROI NIfTIs, stimuli HDF5, "
        "COCO-style captions. Ground truth (pRFs, noise ceilings) goes to braindiff_simulation/. An interrupted "
        "run resumes where it stopped when rerun with the same flags.",
    )
    simulate.add_argument("--out", help="NSD root to write (default: the demo tier's nsd folder in the workspace)")
    simulate.add_argument("--seed", type=int, default=0, help="world, design and subject seed (0)")
    simulate.add_argument("--n-test", type=int, default=100, help="shared test images (100)")
    simulate.add_argument("--n-train", type=int, default=1500, help="training images per subject (1500)")
    simulate.add_argument("--reps", type=int, default=3, help="repetitions per image (3)")
    simulate.add_argument("--trials-per-session", type=int, default=None,
                          help="trials per beta file (default: largest divisor of the trial count <= 750)")
    simulate.add_argument("--image-size", type=int, default=128, help="stimulus side in the HDF5, pixels (128)")
    simulate.add_argument("--subjects", type=int, nargs="+", default=[1, 2, 5, 7], help="subjects (1 2 5 7)")
    add_settings_arguments(simulate)
    simulate.set_defaults(func=run_simulate)

    figure = demo_subparsers.add_parser(
        "flatmap-figure",
        help="plot the demo flatmap with ROIs and the simulated retinotopic map",
        description="Write a PNG with three flatmap panels: ROI outlines, eccentricity and polar angle.",
    )
    figure.add_argument("--out", default="docs/img/demo_flatmap.png", help="PNG path (docs/img/demo_flatmap.png)")
    figure.set_defaults(func=run_figure)


def run_anatomy(args: argparse.Namespace) -> int:
    from braindiff_app.demo.anatomy import build_anatomy

    start = time.perf_counter()
    summary = build_anatomy(args.out, flatmap_width=args.flatmap_width)
    print(json.dumps(summary, indent=1))
    print(f"built in {time.perf_counter() - start:.0f} s")
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from braindiff_app.demo.simulated_nsd import build_simulated_nsd

    out = args.out or settings_from_args(args).nsd_dir
    if out is None:
        raise ValueError("--out: no output folder given and the real tier has no default; pass --out DIR.")
    start = time.perf_counter()
    summary = build_simulated_nsd(
        out, seed=args.seed, n_test=args.n_test, n_train=args.n_train, n_reps=args.reps,
        trials_per_session=args.trials_per_session, image_size=args.image_size, subjects=tuple(args.subjects),
        progress=True,
    )
    print(f"simulated NSD written to {out} in {time.perf_counter() - start:.0f} s")
    for subject, info in summary["subjects"].items():
        kinds = ", ".join(f"{k} {v['n_voxels']} vox NC {v['median_nc']:.0f}%" for k, v in info["kinds"].items())
        print(f"  subj{int(subject):02d}: {info['n_voxels']} voxels, median NC {info['median_nc']:.0f}% ({kinds})")
    return 0


def run_figure(args: argparse.Namespace) -> int:
    from braindiff_app.demo.figure import plot_demo_flatmap

    print(plot_demo_flatmap(args.out))
    return 0

"""``braindiff prepare``: read an NSD copy (real, or the demo's simulated one) into a prepared subject."""

from __future__ import annotations

import argparse

from braindiff_app.cli import add_protocol_argument, add_settings_arguments, settings_from_args


def register(subparsers, demo_subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="read NSD betas, stimuli and captions into a prepared subject",
        description="Read one subject's NSD betas (func1pt8mm betas_fithrf_GLMdenoise_RR, one session at a time), "
        "keep the nsdgeneral voxels, average each image's repetitions, split shared images into the test set, "
        "and copy the stimuli and COCO captions. Writes into <workspace>/prepared/subjXX. Resumable: rerun the "
        "same command after an interruption. Without --nsd-root the tier's NSD folder is used (the demo tier's "
        "simulated NSD).",
    )
    parser.add_argument("--subject", type=int, required=True, choices=range(1, 9), metavar="{1,2,5,7}",
                        help="NSD subject (the paper uses 1, 2, 5 and 7, the subjects who completed all sessions)")
    parser.add_argument("--sessions", type=int, nargs="+", metavar="N",
                        help="sessions to read (default 1-37, the paper's: 982 test images; a missing one is an "
                        "error naming its file)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_protocol_argument(parser)
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from braindiff_app.data.nsd import prepare_subject

    settings = settings_from_args(args)
    root = settings.nsd_dir
    if root is None:
        raise FileNotFoundError("no NSD folder configured: pass --nsd-root DIR (or set BRAINDIFF_NSD_ROOT), the "
                                "folder holding nsddata/, nsddata_betas/ and nsddata_stimuli/.")
    out = settings.subject_dir("prepared", args.subject)
    result = prepare_subject(root, args.subject, out, sessions=args.sessions, progress=not args.no_progress,
                             protocol=args.protocol)
    print(f"prepared subject {args.subject} from {root}: {result.n_train} train / {result.n_test} test images, "
          f"{result.n_voxels} voxels, sessions {', '.join(map(str, result.sessions))} -> {result.out_dir}")
    for note in result.notes:
        print(f"note: {note}")
    return 0

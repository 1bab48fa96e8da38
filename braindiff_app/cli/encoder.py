"""``braindiff fit-encoder`` and ``braindiff encode``: a subject's encoding model (image -> every voxel)."""

from __future__ import annotations

import argparse
from pathlib import Path

from braindiff_app.cli import add_settings_arguments, settings_from_args


def register(subparsers, demo_subparsers) -> None:
    from braindiff_app.regression.encoder import DEFAULT_FEATURE_SET, DEFAULT_RANK, FEATURE_SETS

    parser = subparsers.add_parser(
        "fit-encoder",
        help="fit a subject's encoding model: image features -> every nsdgeneral voxel",
        description="Fit ridge (one alpha per voxel by leave-one-out error) from the training images' features to "
        "their betas, truncate it to --rank, evaluate it on the test images (Pearson r per voxel; with the prepared "
        "ncsnr.npy of NSD also r^2 over the noise ceiling, per region; on the demo tier also against the "
        "simulator's true responses) and write <workspace>/encoders/subjXX/encoder.safetensors "
        "(or --out). Needs `braindiff prepare` and `braindiff extract vdvae|clip` first.",
    )
    parser.add_argument("--subject", required=True, help="subject number (1, 2, 5, 7) as prepared")
    parser.add_argument("--feature-set", choices=FEATURE_SETS, default=DEFAULT_FEATURE_SET,
                        help=f"encoder inputs (default {DEFAULT_FEATURE_SET}, see docs/encoding.md)")
    parser.add_argument("--rank", type=int, default=DEFAULT_RANK,
                        help=f"rank of the stored weights (default {DEFAULT_RANK}; 0 keeps them dense)")
    parser.add_argument("--out", help="destination file (default <workspace>/encoders/subjXX/encoder.safetensors)")
    parser.add_argument("--overwrite", action="store_true", help="refit when the file exists")
    add_settings_arguments(parser)
    parser.set_defaults(func=run_fit)

    encode = subparsers.add_parser(
        "encode",
        help="predict a subject's brain response to an image (npz + flatmap PNG)",
        description="Predict every voxel's response (z-scored) to an image with the subject's encoder; write "
        "PREFIX.npz (response, voxel_ijk) and PREFIX.png (the response on the flatmap, red above the mean, blue "
        "below). Demo tier without your own models: the committed demo workspace.",
    )
    encode.add_argument("--subject", required=True, help="subject number with an encoder")
    encode.add_argument("--image", required=True, help="an image file (PNG, JPEG, ...)")
    encode.add_argument("--out", help="output prefix (default: the image's name beside it, '-subjXX' added)")
    add_settings_arguments(encode)
    encode.set_defaults(func=run_encode)


def run_fit(args: argparse.Namespace) -> int:

    from braindiff_app.encoding import encoder_path
    from braindiff_app.regression.encoder import fit_subject_encoder

    settings = settings_from_args(args)
    out = Path(args.out) if args.out else encoder_path(settings, args.subject)
    if out.exists() and not args.overwrite:
        print(f"{out} exists (skipped; --overwrite refits)")
        return 0
    prepared = settings.subject_dir("prepared", args.subject)
    true_test = None
    if settings.tier == "demo" and settings.nsd_dir is not None \
            and (settings.nsd_dir / "braindiff_simulation").is_dir() and (prepared / "meta.json").is_file():
        from braindiff_app._bundle_io import read_json
        from braindiff_app.arrays import read_array
        from braindiff_app.demo.simulated_nsd import true_responses

        meta = read_json(prepared / "meta.json")
        ijk = read_array(prepared / "voxel_ijk.npy", mmap=False)
        true_test = true_responses(settings.nsd_dir, int(args.subject), meta["nsd_ids_test"], ijk)
    report = fit_subject_encoder(prepared, settings.subject_dir("features", args.subject), out,
                                 feature_set=args.feature_set, rank=args.rank or None, true_test=true_test,
                                 metadata={"subject": str(int(args.subject)), "tier": settings.tier})
    line = f"wrote {out}: feature set {report['feature_set']} ({report['n_features']} features), median test r " \
           f"{report['median_r']:.3f}"
    if "median_true_r" in report:
        line += f"; against the true responses {report['median_true_r']:.3f} (measured test betas against the " \
                f"truth: {report['median_ceiling']:.3f})"
    print(line)
    if "median_normalized" in report:
        print(_normalized_by_region(settings, args.subject, prepared, out))
    return 0


def _normalized_by_region(settings, subject: str, prepared: Path, path: Path) -> str:
    """One line: the median noise-normalised accuracy (r^2 / NC) over all voxels and per region present."""
    import numpy as np

    from braindiff_app.arrays import read_array
    from braindiff_app.data.atlas import load_atlas
    from braindiff_app.regression.encoder import NC_FLOOR, load_encoder

    values = load_encoder(path).evaluation["normalized_accuracy"]
    parts = [("all", values)]
    if settings.nsd_dir is not None:
        atlas = load_atlas(settings.nsd_dir, subject, read_array(prepared / "voxel_ijk.npy", mmap=False))
        parts += [(name, values[idx]) for name, idx in atlas.regions.items()]
    cells = [f"{name} {np.nanmedian(v):.3f}" if np.isfinite(v).any() else f"{name} -" for name, v in parts]
    return (f"median r^2 / noise ceiling (voxels with NC >= {NC_FLOOR:g}%, "
            f"{int(np.isfinite(values).sum())} of {len(values)}): " + ", ".join(cells))


def run_encode(args: argparse.Namespace) -> int:
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from braindiff_app.atomic import atomic_save_npz, atomic_write_bytes
    from braindiff_app.data.flatmap import draw_values
    from braindiff_app.encoding import load_encoding_models
    from braindiff_app.roi import load_roi_models, load_subject_flatmap, roi_settings

    path = Path(args.image)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file.")
    try:
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError):
        raise ValueError(f"{path}: not an image PIL can read; choose a PNG or JPEG.") from None
    settings, _ = roi_settings(settings_from_args(args))
    if not args.subject.strip().isdigit():
        raise ValueError(f"--subject: expected a subject number with an encoder (1, 2, 5, 7), got {args.subject!r}"
                         " (encoders are fitted per subject; there is none for the average).")
    subject = str(int(args.subject))
    models = load_encoding_models(settings, load_roi_models(settings, [subject]))
    response = models.predict(subject, image[None])[0]
    prefix = Path(args.out) if args.out else path.with_name(f"{path.stem}-subj{int(subject):02d}")
    atlas = models.roi.atlases[subject]
    atomic_save_npz(prefix.with_suffix(".npz"), {"response": response, "voxel_ijk": np.asarray(atlas.voxel_ijk)})
    flat, lookup = load_subject_flatmap(settings, atlas)
    buffer = io.BytesIO()
    Image.fromarray(draw_values(flat, lookup, response)).save(buffer, format="PNG")
    atomic_write_bytes(prefix.with_suffix(".png"), buffer.getvalue())
    print(f"wrote {prefix.with_suffix('.npz')} (response: {len(response)} voxels, z-scored) and "
          f"{prefix.with_suffix('.png')}")
    return 0

"""``braindiff roi``: ROI-optimal images from weighted regions, a recipe, or the paper's Figure 5/7 grids."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used: `braindiff --help` stays fast
    import numpy as np


def register(subparsers, demo_subparsers) -> None:
    from braindiff_app.cli import add_protocol_argument, add_settings_arguments
    from braindiff_app.cli._stage2 import add_stage2_arguments
    from braindiff_app.roi import PATTERN_RESCALES

    parser = subparsers.add_parser(
        "roi",
        help="ROI-optimal images: activate brain regions, see the image",
        description="Build a synthetic fMRI pattern (1 on the chosen regions' voxels times their weights, 0 "
        "elsewhere), push it through a subject's regressors (the pattern's effect sized like a typical training "
        "image's deviation, as the reference code does: 'effect' re-scaling; --rescale norm for the paper's "
        "wording), and write the VDVAE guess, the final image and the recipe JSON that re-creates them. Regions: V1, "
        "V2, V3, hV4 (or V4), faces, words, places, bodies, ecc0.5, ecc1, ecc2, ecc4, ecc4+. With --paper: the "
        "paper's Figure 5 (8 ROIs) and Figure 7 (eccentricity bands) grids, subjects x regions plus the subject "
        "average.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--regions", help="weighted regions, e.g. 'V1:+1,faces:+1,V2:-1' or '+V1 +hV4 -bodies'")
    what.add_argument("--recipe", help="a recipe JSON written by an earlier run or the ROI studio (re-creates its "
                      "images; a best-of-N recipe ranks its N candidates again with the subject's encoder and writes "
                      "the best)")
    what.add_argument("--paper", action="store_true", help="write the Figure 5 and Figure 7 grids")
    parser.add_argument("--subject", default="1", help="subject number or 'average' (default 1)")
    parser.add_argument("--painted", help="a .npy file of painted voxel indices (int) added with weight 1")
    parser.add_argument("--seed", type=int, default=0, help="image seed (default 0)")
    add_stage2_arguments(parser, ("strength", "num_inference_steps"))
    parser.add_argument("--rescale", choices=PATTERN_RESCALES, default=PATTERN_RESCALES[0],
                        help="re-scaling of the pattern's predictions: 'effect' (default, the reference code's: the "
                        "pattern's effect sized like a typical image's deviation, added to the intercept) or 'norm' "
                        "(the paper's text: the whole prediction brought to the typical norm of training predictions)")
    parser.add_argument("--out", help="output folder (default <home>/roi)")
    add_protocol_argument(parser)
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def _write_png(path, image) -> None:
    import io

    from PIL import Image

    from braindiff_app.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _check_encoder(settings, recipe, n: int, source: str) -> None:
    """A best-of-N recipe needs its subject's encoder to rank the candidates: a ValueError naming the fix if none."""
    from braindiff_app.encoding import subjects_with_encoders

    if recipe.subject != "average" and recipe.subject not in subjects_with_encoders(settings):
        raise ValueError(f"{source}: a best-of-{n} recipe ranks its candidates by subject {recipe.subject}'s "
                         f"encoder, and {settings.workspace / 'encoders'} has none; run `braindiff fit-encoder "
                         f"--subject {recipe.subject}`, or set the recipe's settings.candidates to 1.")


def _best_of_n(settings, models, recipe, n: int):
    """The best of ``n`` candidates (seeds ``recipe.seed ...``), ranked by the subject's encoder as the ROI studio
    ranks them: (VDVAE guess, final image, the recipe with its new ranking)."""
    from dataclasses import replace

    from braindiff_app.encoding import load_encoding_models

    ranked = load_encoding_models(settings, roi=models).best_of_n(replace(recipe, ranking=()), n)
    print("candidates ranked by the encoder's predicted activation of the regions: " + ", ".join(
        f"seed {seed} {score:+.3f}" for seed, score in ranked.recipe.ranking))
    return ranked.vdvaes[0], ranked.finals[0], ranked.recipe


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from tqdm.auto import tqdm

    from braindiff_app.cli import settings_from_args
    from braindiff_app.cli._stage2 import stage2_from_args
    from braindiff_app.config import subject_folder
    from braindiff_app.protocol import DEFAULT_PROTOCOL, get_protocol
    from braindiff_app.roi import (
        PAPER_FIGURES,
        PATTERN_RESCALES,
        Recipe,
        load_roi_models,
        paper_figure,
        parse_regions,
        roi_settings,
    )

    user_settings = settings_from_args(args)
    out = Path(args.out) if args.out else user_settings.home / "roi"
    # With no demo regressors of the user's own, the demo tier reads the committed workspace (as the app does).
    settings, committed = roi_settings(user_settings)
    if committed:
        print(f"using the committed demo workspace ({settings.home}); `braindiff demo build` makes your own")
    stage2 = {**stage2_from_args(args, settings.tier).to_json(), "rescale": args.rescale}
    if args.paper:
        models = load_roi_models(settings)
        models.pipeline.protocol = get_protocol(args.protocol)
        for name, regions in PAPER_FIGURES.items():
            total = (len(models.subjects) + 1) * len(regions)
            with tqdm(total=total, desc=name) as bar:
                grid = paper_figure(models, regions, seed=args.seed, settings=stage2,
                                    callback=lambda done, n: bar.update(1))
            path = out / f"{settings.tier}-{name}.png"
            _write_png(path, grid)
            print(f"written: {path}")
        return 0
    if args.recipe:
        recipe = Recipe.load(args.recipe)
        ignored = [flag for flag, given in (
            ("--subject", args.subject != "1"), ("--seed", args.seed != 0), ("--painted", bool(args.painted)),
            ("--rescale", args.rescale != PATTERN_RESCALES[0]), ("--strength", args.strength is not None),
            ("--steps", args.num_inference_steps is not None)) if given]
        if ignored:  # the recipe is the experiment: its own subject, seed and settings make the same image again
            print(f"note: --recipe replays the recipe's own subject, seed and settings; ignored: {', '.join(ignored)}",
                  file=sys.stderr)
    else:
        painted = _painted_voxels(args.painted) if args.painted else ()
        recipe = Recipe(subject=args.subject, regions=parse_regions(args.regions), painted=painted,
                        seed=args.seed, settings={**stage2, "tier": settings.tier, "protocol": args.protocol})
    candidates = int(recipe.settings.get("candidates", 1))
    if candidates > 1:
        _check_encoder(settings, recipe, candidates, args.recipe)
    subjects = None if recipe.subject == "average" else [recipe.subject]
    models = load_roi_models(settings, subjects)
    # A recipe carries its protocol (the default when it names none): replaying it re-creates the same image.
    models.pipeline.protocol = get_protocol(recipe.settings.get("protocol", DEFAULT_PROTOCOL))
    stem = f"{settings.tier}-{subject_folder(recipe.subject)}-" + "_".join(
        f"{name}{weight:+g}" for name, weight in recipe.regions.items()) + (
        f"_painted{len(recipe.painted)}" if recipe.painted else "") + f"-seed{recipe.seed}" + (
        f"-best{candidates}" if candidates > 1 else "")
    if candidates > 1:  # a best-of-N recipe (the ROI studio's): rank its candidates again, as the studio does
        vdvae, final, recipe = _best_of_n(settings, models, recipe, candidates)
    else:
        result = models.generate(recipe)
        vdvae, final = result.vdvae[0], result.final[0]
    _write_png(out / f"{stem}_vdvae.png", vdvae)
    _write_png(out / f"{stem}_final.png", final)
    recipe.save(out / f"{stem}_recipe.json")
    print(f"written: {out / stem}_{{vdvae.png,final.png,recipe.json}}  ({recipe.label})")
    return 0


def _painted_voxels(path: str) -> np.ndarray:
    """``--painted FILE``: a 1-D .npy array of voxel indices; ValueError naming the file otherwise."""
    from braindiff_app.arrays import read_array

    values = read_array(path, "--painted expects a .npy file of voxel indices", mmap=False)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ValueError(f"{path}: --painted expects a 1-D array of whole voxel indices (numpy.save of an int "
                         f"array), got shape {values.shape} of {values.dtype}.")
    return values

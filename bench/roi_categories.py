"""ROI-optimal images on the demo tier: do category regions' images show their category?

The judge is the stimulus world's own content detector (:mod:`braindiff_app.demo.judge`): a small CNN
trained here, each run (seeded, a few minutes on one CPU thread), on rendered scenes of another world seed than the
demo experiment's, a third of them passed through the demo VAE and a third through the demo VDVAE (round trips:
the blur of generated images). It is checked on held-out scenes and on the seen test images of the committed demo
bundles (ground truth, VDVAE guesses and final reconstructions against the scenes' true content).

Each region's ROI-optimal images (every subject with regressors, several seeds) are then judged: per region, the
fraction of images in which the judge finds each category (probability > 0.5) and the mean probability, side by
side with the other regions' rates, plus the images' high-spatial-frequency energy, how far from the centre their
contrast lies and how much fine detail the centre and the periphery hold (early visual areas are expected to give
finer texture extending to the periphery; along the eccentricity bands, objects should move outwards), for each
re-scaling of the patterns' predictions (`--rescale`: "norm", the baseline, side by side with "effect", the
reference code's way and the ROI studio's default; see braindiff_app.roi.predict_pattern_features).
A last table checks the regressors apart from the image models: the cosine between each region's predicted features
and each category's direction in feature space (mean training features of images with the category minus without),
and the size of that effect next to a typical training image's deviation from the mean prediction.

``--grid PNG`` also writes the final images of the "effect" re-scaling (the last one asked for when "effect" is
not), one row per region, each image labelled with the judge's probability of the row's category.

Usage: python bench/roi_categories.py [--home DIR] [--seeds 4] [--train-scenes 3000] [--epochs 8]
       [--rescale norm,effect] [--grid PNG]
(needs a built demo workspace: `braindiff demo build`, or the committed assets/demo/home; the feature check needs
the workspace's features and prepared subjects and is skipped without them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from braindiff_app.regression import FEATURE_NAMES  # noqa: E402
from braindiff_app.stage2 import Stage2Settings  # noqa: E402

REGIONS = ("V1", "V2", "V3", "hV4", "faces", "places", "bodies", "words")
BANDS = ("ecc0.5", "ecc1", "ecc2", "ecc4", "ecc4+")  # eccentricity bands: texture statistics only (Figure 7)
JUDGED = ("faces", "bodies", "places", "words")
EARLY, CATEGORY = ("V1", "V2", "V3"), ("faces", "places", "bodies")


def texture_stats(images: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per image of uint8 ``images``: high-frequency energy fraction, contrast eccentricity, fine detail in the
    centre and in the periphery.

    Contrast eccentricity: the mean distance from the centre (0 centre, 1 corner) weighted by the local contrast
    (absolute deviation from the image's mean grey). Fine detail: the mean power (x 1000) of the high-pass image
    (spatial frequencies above half the Nyquist limit) within half the half-width of the centre, and beyond 0.7 of
    it (the periphery, corners included).
    """
    gray = images.astype(np.float32).mean(-1) / 255.0
    spectrum = np.fft.fftshift(np.fft.fft2(gray - gray.mean((1, 2), keepdims=True)), axes=(1, 2))
    h, w = gray.shape[1:]
    y, x = np.mgrid[0:h, 0:w]
    frequency = np.hypot(y - h / 2, x - w / 2) / (min(h, w) / 2)
    radius = np.hypot(y - (h - 1) / 2, x - (w - 1) / 2) / (min(h, w) / 2)
    power = np.abs(spectrum) ** 2
    high = (power * (frequency > 0.5)).sum((1, 2)) / power.sum((1, 2))
    detail = np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum * (frequency > 0.5), axes=(1, 2)))) ** 2 * 1e3
    contrast = np.abs(gray - gray.mean((1, 2), keepdims=True))
    ecc = (contrast * radius).sum((1, 2)) / np.maximum(contrast.sum((1, 2)), 1e-12) / np.sqrt(2)
    return high, ecc, detail[:, radius < 0.5].mean(1), detail[:, radius > 0.7].mean(1)


def demo_degraders(pipeline):
    """Round trips through the demo's image models: the degradations the judge must see through."""
    import torch

    from braindiff_app.models.vdvae import decode_latents, extract_latents

    def vae(images: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(images), 100):
                x = torch.from_numpy(images[i:i + 100]).permute(0, 3, 1, 2).float() / 127.5 - 1
                y = pipeline.vae.decode(pipeline.vae.encode(x).latent_dist.mean).sample
                out.append(((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
        return np.concatenate(out)

    def vdvae(images: np.ndarray) -> np.ndarray:
        latents = extract_latents(pipeline.vdvae, images, n_layers=pipeline.vdvae_layers, progress=False)
        return decode_latents(pipeline.vdvae, latents, n_layers=pipeline.vdvae_layers,
                              seeds=np.arange(len(images)), progress=False)

    return {"VAE round trip": vae, "VDVAE round trip": vdvae}


def world_seed(settings) -> int:
    """The world seed of the simulated experiment (its simulation.json; the demo build's default 0 otherwise)."""
    path = Path(settings.nsd_dir or "") / "braindiff_simulation" / "simulation.json"
    return int(json.loads(path.read_text())["seed"]) if path.is_file() else 0


def seen_images(bundle_dirs, seed: int):
    """Ground truth, VDVAE guesses and finals of the bundles' test trials, pooled, with their scenes' content."""
    from braindiff_app.bundles import open_bundle
    from braindiff_app.demo.stimuli import content_labels, make_scene, render_scene

    kinds = ("ground_truth", "vdvae", "final")
    images, labels, mismatch = {k: [] for k in kinds}, [], 0.0
    for folder in bundle_dirs:
        bundle = open_bundle(folder)
        ids = [int(t["trial_id"]) for t in json.loads((Path(folder) / "trials.json").read_text())]
        scenes = [make_scene(seed, i) for i in ids]
        labels.append(content_labels(scenes))
        for kind in kinds:
            images[kind] += [bundle.image(i, kind) for i in range(bundle.n_trials)]
        gt = images["ground_truth"][-1]
        mismatch = max(mismatch, float(np.abs(render_scene(scenes[-1], gt.shape[0]).astype(float) - gt).mean()))
    return {k: np.stack(v) for k, v in images.items()}, np.concatenate(labels), mismatch


def oracle_reconstructions(settings, pipeline, subject: str, seed: int):
    """Test images reconstructed from their true features (no regressor): what the image models can convey."""
    from braindiff_app.demo.stimuli import content_labels, make_scene

    meta = json.loads((settings.subject_dir("prepared", subject) / "meta.json").read_text())
    folder = settings.subject_dir("features", subject)
    features = {name: np.load(folder / f"{name}_test.npy", allow_pickle=False)
                for name in FEATURE_NAMES}
    out = pipeline(features=features, seeds=np.arange(len(features["vdvae"])))
    labels = content_labels([make_scene(seed, int(i)) for i in meta["nsd_ids_test"]])
    return {"vdvae": out.vdvae, "final": out.final}, labels


def category_directions(settings, subject: str, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per feature, per judged category: unit vector (mean train features with the category - without)."""
    from braindiff_app.demo.stimuli import CATEGORIES, content_labels, make_scene

    meta = json.loads((settings.subject_dir("prepared", subject) / "meta.json").read_text())
    labels = content_labels([make_scene(seed, int(i)) for i in meta["nsd_ids_train"]])
    out = {}
    for name in FEATURE_NAMES:
        feats = np.load(settings.subject_dir("features", subject) / f"{name}_train.npy", mmap_mode="r")
        feats = np.asarray(feats, dtype=np.float32).reshape(len(feats), -1)
        out[name] = {}
        for c in JUDGED:
            has = labels[:, CATEGORIES.index(c)]
            if has.all() or not has.any():
                continue
            d = feats[has].mean(0) - feats[~has].mean(0)
            out[name][c] = d / np.linalg.norm(d)
    return out


def pattern_effect(regressor, pattern: np.ndarray) -> np.ndarray:
    """The linear part of a regressor's prediction for a z-scored pattern: prediction minus the all-zero one."""
    patterns = np.stack([pattern, np.zeros_like(pattern)]).astype(np.float64)
    pred = np.asarray(regressor.predict_standardized(patterns, rescale="none"), dtype=np.float64).reshape(2, -1)
    return pred[0] - pred[1]


def roi_tables(models, judge, rescale: str, n_seeds: int, steps: int) -> tuple[dict, dict]:
    """Generate every region's ROI-optimal images; print judged hit rates and texture statistics.

    Returns the final images and the judge's probabilities per region (bands left out), for :func:`write_grid`.
    """
    from braindiff_app.demo.judge import predict_content
    from braindiff_app.demo.stimuli import CATEGORIES
    from braindiff_app.roi import Recipe

    images = {"final": {}, "VDVAE guess": {}}
    for region in REGIONS + BANDS:
        finals, first = [], []
        for subject in models.subjects:
            if region not in models.atlases[subject].regions:
                continue
            for s in range(n_seeds):
                out = models.generate(Recipe(subject=subject, regions={region: 1.0}, seed=s,
                                             settings={"rescale": rescale,
                                                       "num_inference_steps": steps}))
                finals.append(out.final[0])
                first.append(out.vdvae[0])
        if finals:
            images["final"][region], images["VDVAE guess"][region] = np.stack(finals), np.stack(first)
    cols = [CATEGORIES.index(c) for c in JUDGED]
    judged = {}
    for kind, table in images.items():
        probs = {r: predict_content(judge, ims) for r, ims in table.items()}
        judged[kind] = probs
        texture = {r: texture_stats(ims) for r, ims in table.items()}
        print(f"\n[rescale {rescale!r}] ROI-optimal images ({kind}): hit rate (p > 0.5) / mean probability")
        print(f"{'region':8s} " + " ".join(f"{c:>10s}" for c in JUDGED)
              + "  high-freq  contrast-ecc  detail centre/periphery   n")
        for region, p in probs.items():
            if region in BANDS:
                continue
            high, ecc, centre, periphery = texture[region]
            print(f"{region:8s} " + " ".join(f"{(p[:, j] > 0.5).mean():5.2f}/{p[:, j].mean():4.2f}" for j in cols)
                  + f"  {high.mean():9.4f}  {ecc.mean():12.3f}  {centre.mean():9.3f} / {periphery.mean():.3f}"
                  + f"  {len(p):5d}")
        print("category region vs the other regions' images: hit rate; mean probability")
        for category in JUDGED:
            if category not in probs:
                continue
            j = CATEGORIES.index(category)
            own = probs[category][:, j]
            others = np.concatenate([probs[r][:, j] for r in probs if r != category and r in REGIONS])
            print(f"  {category:7s}: hit {(own > 0.5).mean():.2f} vs {(others > 0.5).mean():.2f}; mean p "
                  f"{own.mean():.2f} vs {others.mean():.2f} ({own.mean() / max(others.mean(), 1e-9):.2f}x)")
        for name, group in (("V1-V3", EARLY), ("faces/places/bodies", CATEGORY)):
            group = [r for r in group if r in texture]
            stats = [np.concatenate([texture[r][k] for r in group]) for k in range(4)]
            print(f"  texture {name:20s}: " + ", ".join(
                f"{label} {v.mean():.4f} +- {v.std() / np.sqrt(len(v)):.4f}" for label, v in
                zip(("high-freq", "contrast-ecc", "detail centre", "detail periphery"), stats, strict=True))
                + f" (n {len(stats[0])})")
        bands = [b for b in BANDS if b in texture]
        if bands:
            print("  eccentricity bands, centre to periphery (" + ", ".join(bands) + "): contrast-ecc "
                  + " ".join(f"{texture[b][1].mean():.3f}" for b in bands) + "; detail centre/periphery "
                  + " ".join(f"{texture[b][2].mean():.3f}/{texture[b][3].mean():.3f}" for b in bands))
    finals = {r: ims for r, ims in images["final"].items() if r in REGIONS}
    return finals, {r: judged["final"][r] for r in finals}


def write_grid(path: Path, finals: dict, probs: dict, rescale: str, side: int = 96) -> None:
    """One row per region of its ROI-optimal final images (nearest-neighbour at ``side`` px), each captioned with
    the judge's probability of the row's category (category rows) or of words (early rows), as PNG."""
    import io

    from PIL import Image, ImageDraw

    from braindiff_app.atomic import atomic_write_bytes
    from braindiff_app.demo.stimuli import CATEGORIES

    if not finals:
        print(f"\n{path}: not written (no region produced images)")
        return
    n_cols = max(len(v) for v in finals.values())
    margin, head, caption, pad = 110, 22, 14, 4
    sheet = Image.new("RGB", (margin + n_cols * (side + pad), head + len(finals) * (side + caption + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((margin, 4), f"ROI-optimal final images (rescale {rescale!r}), each subject x seed; caption: judge's "
              "P(row's category)", fill="black")
    for r, (region, ims) in enumerate(finals.items()):
        category = region if region in JUDGED else "words"
        p = probs[region][:, CATEGORIES.index(category)]
        y0 = head + r * (side + caption + pad)
        hit = (p > 0.5).mean()
        draw.text((6, y0 + side // 2 - 12), f"{region}", fill="black")
        draw.text((6, y0 + side // 2 + 2), f"{category} {hit:.2f}", fill=(90, 90, 90))
        for c, image in enumerate(ims):
            x0 = margin + c * (side + pad)
            sheet.paste(Image.fromarray(image).resize((side, side), Image.NEAREST), (x0, y0))
            draw.text((x0 + 2, y0 + side), f"{p[c]:.2f}", fill="black" if p[c] > 0.5 else (150, 150, 150))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())
    print(f"\nwrote {path} ({sheet.width}x{sheet.height} px)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="demo workspace home (default: BRAINDIFF_HOME, else the committed one)")
    parser.add_argument("--seeds", type=int, default=4, help="images per region and subject")
    parser.add_argument("--train-scenes", type=int, default=3000, help="rendered scenes the judge trains on")
    parser.add_argument("--epochs", type=int, default=8, help="judge training epochs")
    parser.add_argument("--rescale", default="norm,effect",
                        help="comma-separated re-scalings of the patterns' predictions to compare (norm, effect)")
    parser.add_argument("--bundles", default=str(ROOT / "braindiff_app" / "precomputed"),
                        help="folder of demo-subjXX bundles whose seen test images check the judge")
    parser.add_argument("--grid", type=Path, help="write the 'effect' final images as a labelled PNG grid")
    args = parser.parse_args()

    import torch

    from braindiff_app.config import load_settings
    from braindiff_app.demo.judge import (
        content_scores,
        judge_training_set,
        predict_content,
        train_content_judge,
    )
    from braindiff_app.demo.stimuli import CATEGORIES
    from braindiff_app.roi import load_roi_models, roi_settings, synthetic_pattern

    torch.set_num_threads(1)
    user_settings = load_settings(home=args.home, tier="demo")
    settings, committed = roi_settings(user_settings)
    models = load_roi_models(settings)
    seed = world_seed(user_settings)
    print(f"subjects {models.subjects} ({'committed low-rank' if committed else 'workspace'} regressors), "
          f"world seed {seed}")

    # 1. The judge: trained on world 1 (the experiment shows world 0), checked on world 2.
    start = time.perf_counter()
    degraders = demo_degraders(models.pipeline)
    images, labels, _ = judge_training_set(args.train_scenes, seed=1, degraders=degraders)
    judge = train_content_judge(images, labels, epochs=args.epochs, seed=0, progress=True)
    n_params = sum(p.numel() for p in judge.parameters())
    print(f"judge: {n_params} parameters, {judge.size} px input, trained in {time.perf_counter() - start:.0f} s")
    held, held_labels, held_source = judge_training_set(999, seed=2, degraders=degraders)
    show = list(CATEGORIES)
    print("judge AUC / accuracy (p > 0.5) per category:")
    print(f"  {'images':34s} " + " ".join(f"{c:>11s}" for c in show))

    def score_row(name: str, probs: np.ndarray, truth: np.ndarray) -> None:
        s = content_scores(probs, truth)
        print(f"  {name:34s} " + " ".join(f"{s[c]['auc']:5.2f}/{s[c]['accuracy']:4.2f}" for c in show))

    for k, name in enumerate(["rendered (held out)", *degraders]):
        rows = held_source == k
        score_row(f"{name} ({rows.sum()})", predict_content(judge, held[rows]), held_labels[rows])
    bundle_dirs = sorted(Path(args.bundles).glob("demo-subj*"))
    if bundle_dirs:
        seen, seen_labels, mismatch = seen_images(bundle_dirs, seed)
        print(f"  seen test images of {len(bundle_dirs)} bundles (rendered scene vs ground truth: mean |diff| "
              f"{mismatch:.2f} grey levels):")
        for kind, ims in seen.items():
            score_row(f"  {kind} ({len(ims)})", predict_content(judge, ims), seen_labels)
    try:
        oracle, oracle_labels = oracle_reconstructions(user_settings, models.pipeline, models.subjects[0], seed)
    except FileNotFoundError as exc:
        print(f"  oracle reconstructions skipped: {exc}")
    else:
        print(f"  subject {models.subjects[0]}'s test images from their TRUE features (no regressor):")
        for kind, ims in oracle.items():
            score_row(f"  oracle {kind} ({len(ims)})", predict_content(judge, ims), oracle_labels)

    # 2. ROI-optimal images, judged, under each re-scaling of the synthetic patterns' predictions.
    rescales = [r.strip() for r in args.rescale.split(",") if r.strip()]
    for rescale in rescales:
        finals, probs = roi_tables(models, judge, rescale, args.seeds,
                                   Stage2Settings.for_tier(settings.tier).num_inference_steps)
        if args.grid and rescale == ("effect" if "effect" in rescales else rescales[-1]):
            write_grid(args.grid, finals, probs, rescale)

    # 3. The regressors alone: does a region's pattern predict its category's direction in feature space?
    try:
        directions = {s: category_directions(user_settings, s, seed) for s in models.subjects}
    except FileNotFoundError as exc:
        print(f"\nfeature check skipped: {exc}")
        return
    print("\ncosine of a region's effect on the predicted features (its prediction minus the all-zero pattern's, "
          "mean over subjects) with each category's direction:")
    for name in FEATURE_NAMES:
        print(f"  {name}:  {'region':8s} " + " ".join(f"{c:>7s}" for c in JUDGED) + "  |effect| / typical deviation")
        size = {r: [] for r in REGIONS}
        for region in REGIONS:
            cos = {c: [] for c in JUDGED}
            for s in models.subjects:
                if region not in models.atlases[s].regions:
                    continue
                reg = models.regressors[s][name]
                pred = pattern_effect(reg, synthetic_pattern(models.atlases[s], {region: 1.0}))
                size[region].append(np.linalg.norm(pred) / np.sqrt(np.sum(np.asarray(reg.pred_std_) ** 2.0)))
                for c, d in directions[s][name].items():
                    cos[c].append(float(pred @ d / np.linalg.norm(pred)))
            if any(cos.values()):
                cells = " ".join(f"{np.mean(cos[c]):7.3f}" if cos[c] else f"{'-':>7s}" for c in JUDGED)
                print(f"  {'':{len(name) + 2}s}{region:8s} {cells}  {np.mean(size[region]):.2f}")


if __name__ == "__main__":
    main()

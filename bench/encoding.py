"""The encoding model on the demo tier: accuracy against the simulator's ceiling, best-of-N, round trip, timing.

Run from the repository root (a built demo workspace is needed for the simulator's ground truth: `braindiff demo
simulate`, `prepare`, `extract vdvae|clip` per subject, e.g. under --home)::

    python bench/encoding.py --home /tmp/enc_home --seeds 6

1. Encoder accuracy: per region, the median over voxels of Pearson r between predicted and measured test responses
   (100 test images, 3 repetitions averaged); the ceiling, r between the measured and the true noiseless responses
   (what a perfect model would score against the measured ones), their ratio; and r against the true responses,
   from the committed encoder files (written by ``braindiff fit-encoder``). With --compare-features, the
   feature sets are refitted for subject 1 side by side (the choice of ``clip_grid4+vdvae``).
2. Best-of-N: for faces, places, bodies and V1 x 4 subjects x --seeds seeds, the top-ranked of N=8 candidates
   against the single image of the same recipe and seed (candidate 0), paired, with a bootstrap 95% interval of the
   mean difference. Scored by the simulator's TRUE response of the target region's voxels (its model of each voxel,
   run on the generated image; the category drive needs the image's category coverage, which generated images
   lack, so for faces/places/bodies the true response is that of the voxels' contrast-energy and surface-colour
   terms only, and the content judge's probability of the category is reported beside it).
3. Round trip: 2-way identification (demo CLIP) of decode(predict(image)) against the input, on the test images,
   beside the decoding of the measured test betas (the bundles' final images).
4. Timing on the CPU threads given (--threads, default 2): one round trip and one best-of-4 generate, each against
   a single ROI generate in the same process (ratios).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REGIONS = ("faces", "places", "bodies", "V1")
KIND_OF = {"V1": 1, "faces": 4, "places": 5, "bodies": 6}


def bootstrap_ci(diff: np.ndarray, n: int = 10000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n, len(diff)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def accuracy_table(models) -> None:
    print("\n## 1. Encoder accuracy (median r over each region's voxels, 100 test images)\n")
    print("| subject | region | voxels | r measured | ceiling: r(measured, true) | r measured / ceiling | r true |")
    print("|---|---|---|---|---|---|---|")
    for s in models.subjects:
        ev = models.encoder(s).evaluation
        for region, idx in [("all", np.arange(models.encoder(s).n_voxels)),
                            *[(r, models.roi.atlases[s].regions[r]) for r in ("V1", "V2", "V3", *REGIONS[:3])]]:
            acc, true, ceil = (float(np.median(ev[k][idx])) for k in ("accuracy", "true_accuracy", "ceiling"))
            print(f"| {s} | {region} | {len(idx)} | {acc:.3f} | {ceil:.3f} | {acc / ceil:.2f} | {true:.3f} |")


def compare_features(home: Path) -> None:
    from braindiff_app.config import load_settings
    from braindiff_app.demo.simulated_nsd import true_responses
    from braindiff_app.regression.encoder import FEATURE_SETS, fit_subject_encoder, load_encoder

    settings = load_settings(home=home, tier="demo")
    prepared, features = settings.subject_dir("prepared", 1), settings.subject_dir("features", 1)
    import json

    meta = json.loads((prepared / "meta.json").read_text())
    truth = true_responses(settings.nsd_dir, 1, meta["nsd_ids_test"], np.load(prepared / "voxel_ijk.npy"))
    print("\n## Feature sets, subject 1 (median r over all voxels; rank 32 and dense)\n")
    print("| feature set | features | rank | r measured | r true | fit s |")
    print("|---|---|---|---|---|---|")
    out = home / "bench-encoders"
    for feature_set in FEATURE_SETS:
        for rank in (32, None):
            start = time.perf_counter()
            path = out / f"{feature_set}-{rank}.safetensors"
            report = fit_subject_encoder(prepared, features, path, feature_set=feature_set, rank=rank,
                                         true_test=truth)
            seconds = time.perf_counter() - start
            print(f"| {feature_set} | {load_encoder(path).n_features} | {rank or 'dense'} | {report['median_r']:.3f} "
                  f"| {report['median_true_r']:.3f} | {seconds:.0f} |", flush=True)


def true_region_response(nsd_dir: Path, subject: str, region: str, images: np.ndarray, voxel_models: dict,
                         ) -> np.ndarray:
    """Mean true drive of the region's simulated voxels of that kind (no category coverage: see the notes)."""
    from braindiff_app.demo.simulate import stimulus_features, voxel_drive

    model = voxel_models[subject]
    features = stimulus_features(images, np.zeros(images.shape[:3], np.uint8))
    drive = voxel_drive(model, features)
    return drive[:, model.kind == KIND_OF[region]].mean(axis=1)


def best_of_n(models, nsd_dir: Path, seeds: int, n: int, stage2: dict, judge) -> None:
    from braindiff_app.demo.judge import predict_content
    from braindiff_app.demo.simulate import load_voxel_model
    from braindiff_app.demo.stimuli import CATEGORIES
    from braindiff_app.roi import Recipe

    voxel_models = {}
    for s in models.subjects:
        voxel_models[s] = load_voxel_model(nsd_dir / "braindiff_simulation" / f"subj{int(s):02d}_voxels.npz")
    print(f"\n## 2. Best-of-{n} against a single seed (paired over {len(models.subjects)} subjects x {seeds} seeds)\n")
    print("| target | pairs | true response: single | top-ranked | difference [95% CI] | top is candidate 0 "
          "| judged P(category): single | top-ranked |")
    print("|---|---|---|---|---|---|---|---|")
    for region in REGIONS:
        single, best, judged_single, judged_best, same = [], [], [], [], 0
        for s in models.subjects:
            for k in range(seeds):
                recipe = Recipe(subject=s, regions={region: 1.0}, seed=1000 * k, settings=stage2)
                ranked = models.best_of_n(recipe, n)
                first = int(np.flatnonzero(ranked.seeds == recipe.seed)[0])
                same += first == 0
                pair = ranked.finals[[first, 0]]
                truth = true_region_response(nsd_dir, s, region, pair, voxel_models)
                single.append(truth[0])
                best.append(truth[1])
                if judge is not None and region in CATEGORIES:
                    probs = predict_content(judge, pair)[:, list(CATEGORIES).index(region)]
                    judged_single.append(probs[0])
                    judged_best.append(probs[1])
        single, best = np.array(single), np.array(best)
        lo, hi = bootstrap_ci(best - single)
        judged = (f"{np.mean(judged_single):.2f} | {np.mean(judged_best):.2f}" if judged_single else "- | -")
        print(f"| {region} | {len(single)} | {single.mean():.3f} | {best.mean():.3f} | "
              f"{(best - single).mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | {same}/{len(single)} | {judged} |", flush=True)


def round_trip(models, settings, stage2: dict, n_images: int) -> None:
    from braindiff_app.bundles import find_bundles
    from braindiff_app.evaluation import two_way_identification
    from braindiff_app.evaluation.backbones import backbones_from_settings

    backbones = backbones_from_settings(settings, ["CLIP"])
    metric = backbones.metrics[0]
    bundles, _ = find_bundles([ROOT / "braindiff_app" / "precomputed"])
    print(f"\n## 3. Round trip: 2-way identification ({metric}) against the input test image\n")
    print("| subject | images | decode(predict(image)) | decode(measured betas) (the bundle's final) |")
    print("|---|---|---|---|")
    for s in models.subjects:
        bundle = next(b for b in bundles if b.subject == s and b.tier == "demo" and b.decoded)
        count = min(n_images, bundle.manifest.n_trials)
        seen = np.stack([bundle.image(i, "ground_truth") for i in range(count)])
        measured = np.stack([bundle.image(i, "final") for i in range(count)])
        responses = models.predict(s, seen)
        decoded = models.decode(s, responses, seed=0, stage2=stage2).final
        feats = {k: backbones.features(v, [metric])[metric] for k, v in
                 (("seen", seen), ("trip", decoded), ("measured", measured))}
        trip = two_way_identification(feats["seen"], feats["trip"]).mean()
        meas = two_way_identification(feats["seen"], feats["measured"]).mean()
        print(f"| {s} | {len(seen)} | {100 * trip:.1f}% | {100 * meas:.1f}% |", flush=True)


def timing(models, stage2: dict) -> None:
    from braindiff_app.roi import Recipe

    image = np.asarray(models.roi.pipeline(features=models.roi.features(Recipe(subject="1", regions={"V1": 1.0})),
                                           seeds=np.array([0]), **stage2).final[0])
    recipe = Recipe(subject="1", regions={"faces": 1.0}, seed=0, settings=stage2)

    def best(fn, repeats=3):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    single = best(lambda: models.roi.generate(recipe))
    trip = best(lambda: models.round_trip("1", image, stage2=stage2))
    four = best(lambda: models.best_of_n(recipe, 4))
    print(f"\n## 4. Timing ({stage2['num_inference_steps']} DDIM steps, best of 3, warm models)\n")
    print("| call | seconds | / single ROI generate |")
    print("|---|---|---|")
    for name, t in (("single ROI generate (baseline)", single), ("round trip", trip), ("best-of-4 generate", four)):
        print(f"| {name} | {t:.2f} | {t / single:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True, help="a demo workspace home with the simulated NSD (ground truth)")
    parser.add_argument("--seeds", type=int, default=6, help="seeds per region and subject for best-of-N")
    parser.add_argument("--candidates", type=int, default=8, help="N of best-of-N")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--judge-scenes", type=int, default=2000, help="scenes the content judge trains on (0: none)")
    parser.add_argument("--trip-images", type=int, default=100, help="test images per subject in the round trip")
    parser.add_argument("--compare-features", action="store_true", help="refit every feature set for subject 1")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip (accuracy,best,trip,timing)")
    args = parser.parse_args()

    import torch

    from braindiff_app.config import load_settings
    from braindiff_app.encoding import load_encoding_models
    from braindiff_app.roi import roi_settings
    from braindiff_app.stage2 import Stage2Settings

    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    user = load_settings(home=args.home, tier="demo")
    settings, committed = roi_settings(load_settings(home=Path(args.home) / "no-regressors", tier="demo"))
    models = load_encoding_models(settings)
    stage2 = Stage2Settings.for_tier("demo").to_json()
    print(f"encoders of subjects {models.subjects} ({'committed' if committed else 'workspace'}), "
          f"{args.threads} torch threads")
    if "accuracy" not in skip:
        accuracy_table(models)
    if args.compare_features:
        compare_features(Path(args.home))
    if "best" not in skip:
        judge = None
        if args.judge_scenes:
            from bench.roi_categories import demo_degraders
            from braindiff_app.demo.judge import judge_training_set, train_content_judge

            images, labels, _ = judge_training_set(args.judge_scenes, seed=1,
                                                   degraders=demo_degraders(models.roi.pipeline))
            judge = train_content_judge(images, labels, epochs=6, seed=0)
        best_of_n(models, user.nsd_dir, args.seeds, args.candidates, stage2, judge)
    if "trip" not in skip:
        round_trip(models, user, stage2, args.trip_images)
    if "timing" not in skip:
        timing(models, stage2)


if __name__ == "__main__":
    main()

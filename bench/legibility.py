"""What limits the demo world's legibility: demo-CLIP 2-way / 4-way identification along the reconstruction chain.

For one prepared demo subject (``--subjects`` for more), the 100 test images are generated, with the tier's stage-2
settings (``Stage2Settings.for_tier("demo")``), from features of three origins, side by side in one run:

(a) ``true``: the scenes' TRUE features (VDVAE latents, CLIP vision and text embeddings of the seen images, as
    ``braindiff extract`` wrote them): the image models' ceiling; with the true-latent VDVAE guess as init (the
    full model) and without it (``no_vdvae``: random init latent, full denoising); and (a0) the seen images
    through the AutoKL alone (encoded as stage 2 encodes its init, decoded with no UNet step): the ceiling of any
    denoiser in this latent space;
(b) ``noiseless``: features the subject's regressors predict from the NOISELESS simulated response, i.e. the
    simulator's drive for the test images (:func:`braindiff_app.demo.simulate.voxel_drive` of the subject's saved
    :class:`~braindiff_app.demo.simulate.VoxelModel` on the scenes rendered as ``simulated_nsd`` renders them) plus
    the voxels' baseline, in the prepared voxel order and beta-file units (x 300): the regressors alone, without
    trial noise in the test response; with ``--stages ...,noiseless-fit`` also (b2) ``noiseless fit``: the regressors
    refitted (the same alphas) on the noiseless responses to the subject's training images, predicting from the
    noiseless test response: what a linear read-out of the simulated brain gives with no trial noise at all;
    ``refit`` (c2) refits them on the prepared training fMRI and reads the prepared test fMRI; both use the paper's
    alphas times ``--alpha-scale`` (an alpha sweep without touching the workspace's regressors; the workspace's own,
    used by (b) and (c), were fitted with the tier's alphas: on the demo the paper's x 1500/8859), or with
    ``--alpha-grid`` each target's alpha among several by leave-one-out error on the training trials;
(c) ``fmri``: features predicted from the prepared test fMRI (mean over repetitions), as ``braindiff reconstruct``
    does (transductive re-scaling, seeds from the NSD ids): the final reconstructions; the committed bundle's
    images (``committed``) are scored too, with the ground truth the bundle holds.

Each stage also scores its VDVAE guess alone. Identification uses the demo CLIP vision encoder, as ``braindiff
evaluate`` does (:func:`braindiff_app.evaluation.backbones_from_settings`, metric ``demo-CLIP``), and
:func:`braindiff_app.evaluation.n_way_identification` against the seen (prepared) test images; chance is 50% / 25%.

Levers (``--levers``, run on (a) and (c)): DDIM steps, guidance scale, strength, vision/text mixing and the VDVAE
guess's prior temperature, each reported as the change in 4-way / 2-way against the tier's settings, paired per image,
with a 95% percentile bootstrap interval of the mean difference.

``--contact-sheet PATH`` writes a grid of 20 test trials of the first subject's committed bundle (seen, VDVAE guess,
final; each shown at 128 px, nearest-neighbour) and exits.

Needs a demo workspace with the subject prepared, its features extracted and its regressors fitted (``braindiff
prepare / extract vdvae / extract clip / fit --subject N --tier demo``). A diffusion run of 100 images at 20
steps took 15-60 s on a quiet 2-core machine and up to about 6 min when others shared it (the lever rows print
their seconds).

Usage: python bench/legibility.py --home DIR [--subjects 1,2] [--stages true,noiseless,fmri] [--levers steps50,...]
       [--alpha-scale 0.1 | --alpha-grid 0.03,0.1,0.3,1] [--features-only] [--quick]
       python bench/legibility.py --contact-sheet docs/img/contact_before.png
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

from braindiff_app.stage2 import Stage2Settings  # noqa: E402

#: Lever name -> (stage-2 overrides, VDVAE prior temperature or None).
LEVERS = {
    "steps50": ({"num_inference_steps": 50}, None),
    "guidance3": ({"guidance_scale": 3.0}, None),
    "guidance12": ({"guidance_scale": 12.0}, None),
    "strength0.5": ({"strength": 0.5}, None),
    "strength0.9": ({"strength": 0.9}, None),
    "vision0.8": ({"vision_weight": 0.8}, None),
    "vision1.0": ({"vision_weight": 1.0}, None),
    "vision0.3": ({"vision_weight": 0.3}, None),
    "temperature0": ({}, 0.0),
}
DEFAULT_LEVERS = "vision0.3,strength0.5,strength0.9,guidance3,guidance12,temperature0,vision0.8,vision1.0,steps50"
WAYS = (4, 2)
#: Stage name -> its label in the table, in table order.
STAGES = {"true": "(a) true features", "noiseless": "(b) noiseless response",
          "noiseless-fit": "(b2) noiseless train + test", "fmri": "(c) prepared fMRI",
          "refit": "(c2) prepared fMRI, refitted"}


def identification(gt_features: np.ndarray, features: np.ndarray) -> dict[int, np.ndarray]:
    """Per-image n-way identification (fraction, shape (n_images,)) for 4 and 2 ways."""
    from braindiff_app.evaluation import n_way_identification

    return {w: n_way_identification(gt_features, features, ways=w) for w in WAYS}


def noiseless_fmri(settings, subject: str, ids: np.ndarray, voxel_ijk: np.ndarray) -> np.ndarray:
    """The simulator's noise-free test responses in beta-file units: (baseline + drive) x 300, prepared voxel order.

    Returns
    -------
    array of shape (n_images, n_voxels), float32
    """
    from braindiff_app.demo.simulate import load_voxel_model, stimulus_features, voxel_drive
    from braindiff_app.demo.simulated_nsd import FEATURE_SIZE, simulation_dir
    from braindiff_app.demo.stimuli import make_scene, render_scene

    folder = simulation_dir(settings.nsd_dir)
    seed = int(json.loads((folder / "simulation.json").read_text())["seed"])
    model = load_voxel_model(folder / f"subj{int(subject):02d}_voxels.npz")
    images = np.zeros((len(ids), FEATURE_SIZE, FEATURE_SIZE, 3), np.uint8)
    labels = np.zeros((len(ids), FEATURE_SIZE, FEATURE_SIZE), np.uint8)
    for j, i in enumerate(ids):
        images[j], labels[j] = render_scene(make_scene(seed, int(i)), FEATURE_SIZE, labels=True)
    betas = model.mean + voxel_drive(model, stimulus_features(images, labels))
    row = {tuple(v): k for k, v in enumerate(np.asarray(model.ijk).tolist())}
    missing = [tuple(v) for v in voxel_ijk.tolist() if tuple(v) not in row]
    if missing:
        raise ValueError(f"voxel_ijk.npy of subject {subject}: {len(missing)} voxels are not in the simulation's "
                         f"voxel model (first {missing[0]}); was it prepared from another simulation?")
    order = np.array([row[tuple(v)] for v in voxel_ijk.tolist()])
    return (betas[:, order] * 300.0).astype(np.float32)


def refit_regressors(settings, subject: str, fmri_train: np.ndarray, alphas: dict[str, float]) -> dict:
    """The subject's three regressors refitted with ``alphas`` on ``fmri_train`` (n_train, n_voxels), beta units."""
    from braindiff_app.regression import FEATURE_NAMES
    from braindiff_app.regression.ridge import RidgeRegressor

    folder = settings.subject_dir("features", subject)
    regressors = {name: RidgeRegressor(alphas[name]).fit(fmri_train, np.load(folder / f"{name}_train.npy",
                                                                             mmap_mode="r"))
                  for name in FEATURE_NAMES}
    for name, reg in regressors.items():
        chosen = np.asarray(reg.alpha_, dtype=float).reshape(-1)
        if np.ptp(chosen) > 0:  # chosen per target (leave-one-out): how the choice fell
            values, counts = np.unique(chosen, return_counts=True)
            print(f"  {name}: alphas chosen by leave-one-out error: "
                  + ", ".join(f"{v:.4g} x {100 * c / chosen.size:.0f}%" for v, c in zip(values, counts, strict=True)))
    return regressors


class Runner:
    """Generates a stage's images with one subject's pipeline and scores them against the seen images."""

    def __init__(self, pipeline, backbones, gt_features: np.ndarray, seeds: np.ndarray, base: Stage2Settings,
                 batch_size: int) -> None:
        self.pipeline, self.backbones, self.gt = pipeline, backbones, gt_features
        self.seeds, self.base, self.batch_size = seeds, base, batch_size
        self.seconds = 0.0

    def score(self, images: np.ndarray) -> dict[int, np.ndarray]:
        clip = self.backbones.clip_metric
        return identification(self.gt, self.backbones.features(images, [clip])[clip])

    def run(self, features, overrides=None, temperature=None, ablations=(), final=True):
        """Scores of the final image, the VDVAE guess and each ablation: {kind: {ways: per-image array}}."""
        stage2 = self.base.with_overrides(**(overrides or {}))
        start = time.perf_counter()
        out = self.pipeline(features=features, seeds=self.seeds, ablations=ablations, final=final,
                            vdvae_temperature=1.0 if temperature is None else temperature,
                            batch_size=self.batch_size, **stage2.to_json())
        self.seconds += time.perf_counter() - start
        scores = {"VDVAE guess": self.score(out.vdvae)}
        if out.final is not None:
            scores["final"] = self.score(out.final)
        scores.update({kind: self.score(ims) for kind, ims in out.ablations.items()})
        return scores


def autokl_round_trip(pipeline, images: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """``images`` encoded by the pipeline's AutoKL as stage 2 encodes its init image (resized to its size, one
    posterior sample per seed) and decoded again, with no UNet step: the best any denoiser can give back.

    Returns
    -------
    array of shape (n_images, size, size, 3), uint8
    """
    import torch

    from braindiff_app.models.img2img import DualGuidedImg2Img

    stage = DualGuidedImg2Img(vae=pipeline.vae, image_unet=pipeline.image_unet, text_unet=pipeline.text_unet,
                              scheduler=pipeline.scheduler, image_size=pipeline.image_size)
    with torch.no_grad():
        return np.concatenate([stage.decode_latents(stage.prepare_latents(images[i:i + 50], seeds[i:i + 50],
                                                                          torch.zeros(0, dtype=torch.long)))
                               for i in range(0, len(images), 50)])


def row(label: str, scores: dict[int, np.ndarray]) -> str:
    from braindiff_app.evaluation import bootstrap_interval

    cells = []
    for w in WAYS:
        low, high = bootstrap_interval(scores[w])
        cells.append(f"{100 * scores[w].mean():5.1f}% [{100 * low:4.1f}, {100 * high:4.1f}]")
    return f"  {label:44s} " + "  ".join(cells)


def change(label: str, new: dict[int, np.ndarray], base: dict[int, np.ndarray]) -> str:
    from braindiff_app.evaluation import bootstrap_interval

    cells = []
    for w in WAYS:
        diff = new[w].astype(float) - base[w]
        low, high = bootstrap_interval(diff)
        cells.append(f"{100 * diff.mean():+6.1f} [{100 * low:+5.1f}, {100 * high:+5.1f}]")
    return f"  {label:30s} " + "  ".join(cells)


def subject_tables(settings, subject: str, args, backbones) -> None:
    from braindiff_app.pipeline import load_pipeline, trial_seeds
    from braindiff_app.provenance import model_identities
    from braindiff_app.reconstruct import true_test_features
    from braindiff_app.regression import FEATURE_NAMES

    test, true, _ = true_test_features(settings, subject)  # the seen images' own features, checked against the trials
    n = min(args.limit or len(test.trial_ids), len(test.trial_ids))
    rows = np.arange(n)
    true = {name: np.asarray(values[rows]) for name, values in true.items()}
    pipeline = load_pipeline(settings, subject)
    base = Stage2Settings.for_tier("demo").with_overrides(num_inference_steps=args.steps)
    clip = backbones.clip_metric
    gt = backbones.features(np.asarray(test.images)[rows], [clip])[clip]
    runner = Runner(pipeline, backbones, gt, trial_seeds(test.trial_ids[rows], 0), base, args.batch_size)
    fingerprint = model_identities(settings, [subject])["fingerprints"][f"regressors subj{int(subject):02d}"]
    print(f"\nsubject {subject}: {n} test images, stage 2 {base.to_json()}, {clip} identification, regressors "
          f"{fingerprint}", flush=True)

    # (b) and (c): features from the noiseless response and from the prepared (noisy, averaged) fMRI.
    prepared = settings.subject_dir("prepared", subject)
    voxel_ijk = np.load(prepared / "voxel_ijk.npy", allow_pickle=False)
    clean = noiseless_fmri(settings, subject, test.trial_ids, voxel_ijk)
    fmri = np.asarray(test.fmri, dtype=np.float32)
    r = [np.corrcoef(clean[i], fmri[i])[0, 1] for i in range(len(fmri))]
    print(f"  noiseless vs prepared test fMRI: scale ratio (std) {fmri.std() / clean.std():.3f}, mean per-image "
          f"r {np.mean(r):.3f}, mean |diff| {np.abs(fmri - clean).mean():.1f} (beta units x 300)")
    predicted = {"noiseless": pipeline.predict_features(clean, "transductive"),
                 "fmri": pipeline.predict_features(fmri, "transductive")}
    if {"noiseless-fit", "refit"} & set(args.stages):
        from braindiff_app.pipeline import predict_features
        from braindiff_app.regression.subject import DEFAULT_ALPHAS

        grid = args.alpha_grid or [args.alpha_scale]  # several: each target's alpha by leave-one-out error
        alphas = {name: [alpha * g for g in grid] if len(grid) > 1 else alpha * grid[0]
                  for name, alpha in DEFAULT_ALPHAS.items()}
        if "refit" in args.stages:
            train = np.load(prepared / "fmri_train.npy", allow_pickle=False)
            predicted["refit"] = predict_features(refit_regressors(settings, subject, train, alphas), fmri,
                                                  "transductive")
        if "noiseless-fit" in args.stages:
            meta = json.loads((prepared / "meta.json").read_text())
            train = noiseless_fmri(settings, subject, np.asarray(meta["nsd_ids_train"]), voxel_ijk)
            predicted["noiseless-fit"] = predict_features(refit_regressors(settings, subject, train, alphas), clean,
                                                          "transductive")
    predicted = {k: {name: v[rows] for name, v in f.items()} for k, f in predicted.items()}
    for name in FEATURE_NAMES:
        t = true[name].reshape(n, -1)
        corr = {k: np.mean([np.corrcoef(t[i], f[name].reshape(n, -1)[i])[0, 1] for i in range(n)])
                for k, f in predicted.items()}
        print(f"  feature r with the true {name:11s} (mean over images): "
              + ", ".join(f"{k} {v:.3f}" for k, v in corr.items()))
    print("  identification in feature space (predicted vs true features, no image model), 4-way / 2-way"
          + (f"; refitted stages with the paper's alphas x {args.alpha_grid or args.alpha_scale}:"
             if args.alpha_grid or args.alpha_scale != 1 else ":"))
    for name in FEATURE_NAMES:
        ident = {k: identification(true[name], f[name]) for k, f in predicted.items()}
        print(f"    {name:11s}: " + ", ".join(f"{k} {100 * v[4].mean():.1f}% / {100 * v[2].mean():.1f}%"
                                            for k, v in ident.items()))
    if args.features_only:
        return

    print("\n  stage                                         4-way [95% CI]            2-way [95% CI]")
    features = {"true": true, **predicted}
    results = {stage: runner.run(features[stage], ablations=("no_vdvae",) if stage == "true" else ())
               for stage in STAGES if stage in args.stages}
    for stage, scores in results.items():
        for kind, label in (("final", "final"), ("no_vdvae", "no VDVAE init"), ("VDVAE guess", "VDVAE guess alone")):
            if kind in scores:
                print(row(f"{STAGES[stage]}: {label}", scores[kind]))
        if stage == "true":  # what any UNet could reach in this latent space: the seen image through the AutoKL
            print(row("(a0) AutoKL round trip: seen image without UNet",
                      runner.score(autokl_round_trip(pipeline, np.asarray(test.images)[rows], runner.seeds))))
    if "fmri" in args.stages:
        committed = committed_scores(args.bundles, subject, backbones, rows)
        for kind, scores in committed.items():
            print(row(f"(c) committed bundle: {kind}", scores))
    if "refit" in results and "fmri" in results:
        print(change(f"(c2) - (c), alphas x {args.alpha_grid or args.alpha_scale}", results["refit"]["final"],
                     results["fmri"]["final"])
              + "   (paired per image)")
    print(f"  (diffusion + scoring: {runner.seconds:.0f} s)", flush=True)

    lever_stages = [stage for stage in ("true", "fmri") if stage in results]
    if args.levers and lever_stages:
        print("\n  lever (change against the tier's settings, paired per image)   4-way [95% CI]   2-way [95% CI]")
        for name in args.levers:
            overrides, temperature = LEVERS[name]
            for stage in lever_stages:
                label = STAGES[stage].split(":")[0]
                start = runner.seconds
                new = runner.run(features[stage], overrides, temperature)
                print(change(f"{label}: {name}", new["final"], results[stage]["final"])
                      + f"   {runner.seconds - start:.0f} s", flush=True)
                if temperature is not None:
                    print(change(f"{label}: {name} (guess)", new["VDVAE guess"], results[stage]["VDVAE guess"]))


def committed_scores(bundles: str, subject: str, backbones, rows: np.ndarray) -> dict[str, dict[int, np.ndarray]]:
    """The committed bundle's scores per kind (its own ground truth), or {} when there is no bundle."""
    from braindiff_app.bundles import open_bundle

    folder = Path(bundles) / f"demo-subj{int(subject):02d}"
    if not (folder / "manifest.json").exists():
        print(f"  no committed bundle at {folder}")
        return {}
    bundle = open_bundle(folder)
    clip = backbones.clip_metric

    def feats(kind: str) -> np.ndarray:
        return backbones.features(np.stack([bundle.image(int(i), kind) for i in rows]), [clip])[clip]

    gt = feats("ground_truth")
    return {kind: identification(gt, feats(kind)) for kind in ("final", "vdvae", "no_vdvae", "no_text", "no_vision")
            if kind in bundle.kinds}


def contact_sheet(bundle_dir: Path, out: Path, n: int = 20, per_row: int = 4, side: int = 128) -> None:
    """Grid of ``n`` trials (seen | VDVAE guess | final), ``per_row`` trials per row, each image shown at ``side``
    pixels (nearest-neighbour: the native pixels stay visible), written as PNG."""
    from PIL import Image, ImageDraw

    from braindiff_app.atomic import atomic_write_bytes
    from braindiff_app.bundles import open_bundle

    bundle = open_bundle(bundle_dir)
    kinds = ("ground_truth", "vdvae", "final")
    native = [bundle.image(0, k).shape[0] for k in kinds]
    pad, head = 6, 20
    n = min(n, bundle.n_trials)
    n_rows = -(-n // per_row)
    width = per_row * (3 * side + 2 * 2 + pad) + pad
    sheet = Image.new("RGB", (width, head + n_rows * (side + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for c in range(per_row):
        x0 = pad + c * (3 * side + 4 + pad)
        for k, label in enumerate(("seen", "VDVAE guess", "final")):
            draw.text((x0 + k * (side + 2) + 4, 4), f"{label} ({native[k]} px)", fill="black")
    for t in range(n):
        r, c = divmod(t, per_row)
        x0, y0 = pad + c * (3 * side + 4 + pad), head + r * (side + pad)
        for k, kind in enumerate(kinds):
            img = Image.fromarray(bundle.image(t, kind)).resize((side, side), Image.NEAREST)
            sheet.paste(img, (x0 + k * (side + 2), y0))
    import io

    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(out, buffer.getvalue())
    print(f"wrote {out} ({sheet.width}x{sheet.height} px): {n} trials of {bundle_dir.name}, {per_row} per row, "
          f"each seen | VDVAE guess | final ({' / '.join(map(str, native))} px) shown at {side} px (nearest)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="demo workspace home (default: BRAINDIFF_HOME)")
    parser.add_argument("--subjects", default="1", help="comma-separated prepared subjects (default 1)")
    parser.add_argument("--levers", default=DEFAULT_LEVERS,
                        help=f"comma-separated levers of {list(LEVERS)}, or '' for none (default all)")
    parser.add_argument("--limit", type=int, help="first N test images only (identification among those N)")
    parser.add_argument("--steps", type=int, help="DDIM steps of the baseline (default: the tier's, 20)")
    parser.add_argument("--batch-size", type=int, default=25, help="images per diffusion batch")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--stages", default="true,noiseless,fmri",
                        help=f"comma-separated stages of {list(STAGES)} (default true,noiseless,fmri; noiseless-fit "
                             "refits the regressors on noiseless training responses, refit on the prepared ones, "
                             "both with the paper's alphas x --alpha-scale)")
    parser.add_argument("--alpha-scale", type=float, default=1.0,
                        help="factor on the paper's ridge alphas for the refitted stages (noiseless-fit, refit)")
    parser.add_argument("--alpha-grid", type=lambda t: [float(v) for v in t.split(",")],
                        help="comma-separated factors on the paper's alphas: the refitted stages choose each "
                             "target's alpha among them by leave-one-out error on the training trials (overrides "
                             "--alpha-scale)")
    parser.add_argument("--features-only", action="store_true",
                        help="print the feature-space diagnostics of the predicted features and generate nothing")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 12 images, 2 DDIM steps, one lever (steps50 at 4 steps)")
    parser.add_argument("--bundles", default=str(ROOT / "braindiff_app" / "precomputed"),
                        help="folder of the committed demo-subjXX bundles")
    parser.add_argument("--contact-sheet", metavar="PNG", help="write the first subject's contact sheet and exit")
    args = parser.parse_args(argv)
    args.subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    args.levers = [s.strip() for s in args.levers.split(",") if s.strip()]
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [name for name in args.levers if name not in LEVERS]
    if unknown:
        parser.error(f"--levers: unknown {unknown}; expected some of {list(LEVERS)}")
    unknown = [name for name in args.stages if name not in STAGES]
    if unknown or not args.stages:
        parser.error(f"--stages: expected some of {list(STAGES)}, got {args.stages}")
    if args.contact_sheet:
        contact_sheet(Path(args.bundles) / f"demo-subj{int(args.subjects[0]):02d}", Path(args.contact_sheet))
        return
    if args.quick:
        args.limit, args.steps = args.limit or 12, args.steps or 2
        LEVERS["quick-steps4"] = ({"num_inference_steps": 4}, None)
        args.levers = ["quick-steps4"]
    args.steps = args.steps or Stage2Settings.for_tier("demo").num_inference_steps

    import torch

    from braindiff_app.config import load_settings
    from braindiff_app.evaluation import backbones_from_settings

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = load_settings(home=args.home, tier="demo")
    backbones = backbones_from_settings(settings, ["demo-CLIP"])
    if backbones.clip_metric not in backbones.metrics:
        raise SystemExit(f"no CLIP encoder for identification: {backbones.missing}")
    start = time.perf_counter()
    for subject in args.subjects:
        subject_tables(settings, subject, args, backbones)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

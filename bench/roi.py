"""Time one ROI generate (pattern -> regressors -> VDVAE guess -> final image) on the demo tier.

Goal: under 5 s on 2 CPU cores. The baseline measured side by side is the VDVAE-only generate (the same call with
``final=False``), so the ratio shows what stage 2 costs.

Models:
- ``--source demo`` (default when present): the committed demo models and the workspace's subject with regressors
  (the committed assets/demo/home when you have built none).
- ``--source random``: the demo-size architectures (VDVAEConfig.demo(), Versatile Diffusion "demo" size) with random
  weights, and ridge regressors fitted on random betas for a simulated subject of ``--voxels`` voxels: the same
  compute as the demo tier, usable before the demo models are trained.

Usage: ``python bench/roi.py [--source demo|random] [--device cpu|cuda] [--threads 2] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from braindiff_app.config import load_settings, resolve_device  # noqa: E402
from braindiff_app.data.atlas import ALL_REGIONS, ROIAtlas  # noqa: E402
from braindiff_app.pipeline import BrainDiffuserPipeline  # noqa: E402
from braindiff_app.regression import subjects_with_regressors  # noqa: E402
from braindiff_app.roi import (  # noqa: E402
    Recipe,
    ROIModels,
    load_roi_models,
    roi_settings,  # noqa: E402
)
from braindiff_app.stage2 import Stage2Settings  # noqa: E402


def _random_models(device, n_voxels: int, seed: int = 0) -> ROIModels:
    """Demo-size architectures with random weights, regressors fitted on random data."""
    import torch

    from braindiff_app.demo import vd as demo_vd
    from braindiff_app.models import vdvae
    from braindiff_app.regression import RidgeRegressor

    torch.manual_seed(seed)
    stage1 = vdvae.VDVAE(vdvae.VDVAEConfig.demo()).eval().to(device)
    captions = [f"a photo of {w} on a {c} background" for w in ("a face", "a house", "a dog")
                for c in ("red", "green", "blue")]
    tokenizer = demo_vd.train_clip_tokenizer(captions)
    vd = demo_vd.build_components(tokenizer, "demo", seed=seed)
    modules = {name: getattr(vd, name).eval().to(device) for name in ("vae", "image_unet", "text_unet",
                                                                      "image_encoder", "text_encoder")}
    pipeline = BrainDiffuserPipeline({}, stage1, tokenizer=tokenizer, scheduler=vd.scheduler, **modules)
    clip_dim = vd.image_encoder.config.projection_dim
    rng = np.random.default_rng(seed)
    fmri = (rng.normal(size=(64, n_voxels)) * 300).astype(np.float32)
    shapes = {"vdvae": (stage1.config.n_latent(),), "clip_vision": (257, clip_dim), "clip_text": (77, clip_dim)}
    regressors = {name: RidgeRegressor(alpha=1e3).fit(fmri, rng.normal(size=(64, *shape)).astype(np.float32))
                  for name, shape in shapes.items()}
    regions = {name: np.sort(rng.choice(n_voxels, n_voxels // 20, replace=False)) for name in ALL_REGIONS}
    atlas = ROIAtlas("1", n_voxels, regions, {})
    return ROIModels(pipeline, {"1": atlas}, {"1": regressors}, tier="demo")


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (lazy init, allocator, unconditional features)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("demo", "random"), help="default: demo when its models exist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--voxels", type=int, default=4000, help="random source: voxels of the subject")
    parser.add_argument("--regions", default="faces", help="region of the timed recipe (weight +1)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    settings, _ = roi_settings(load_settings(tier="demo", device=args.device))
    have_demo = (settings.demo_models_dir / "vd").exists() and bool(subjects_with_regressors(settings))
    source = args.source or ("demo" if have_demo else "random")
    device = resolve_device(args.device)
    if source == "demo":
        models = load_roi_models(settings, subjects_with_regressors(settings)[:1])
    else:
        models = _random_models(device, args.voxels)
    subject = models.subjects[0]
    steps = Stage2Settings.for_tier(settings.tier).num_inference_steps  # what the app's ROI studio uses on this tier
    recipe = Recipe(subject=subject, regions={args.regions: 1.0}, seed=0, settings={"num_inference_steps": steps})
    features = models.features(recipe)

    with torch.inference_mode():
        t_features = _time(lambda: models.features(recipe), args.repeats)
        t_vdvae = _time(lambda: models.pipeline(features=features, seeds=np.array([0]), final=False), args.repeats)
        t_full = _time(lambda: models.generate(recipe), args.repeats)
        # Side by side: one intra-op thread (small models on a busy CPU suffer from thread oversubscription).
        torch.set_num_threads(1)
        t_one = _time(lambda: models.generate(recipe), args.repeats) if args.threads != 1 else t_full
        torch.set_num_threads(args.threads)
    size = models.pipeline.image_size
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine load average {load:.1f} on {os.cpu_count()} CPUs (timings assume an idle machine)")
    print(f"ROI generate, source={source}, device={device}, threads={args.threads}, subject {subject} "
          f"({models.atlases[subject].n_voxels} voxels), image {size}x{size}, "
          f"{int(0.75 * steps)} of {steps} steps, median of {args.repeats}")
    print(f"  regressors only       {t_features:7.3f} s")
    print(f"  VDVAE-only generate   {t_vdvae:7.3f} s   (baseline)")
    print(f"  full generate         {t_full:7.3f} s   = {t_full / t_vdvae:5.1f} x baseline; "
          f"{t_full / 5.0:4.2f} x the 5 s goal ({'met' if t_full < 5.0 else 'NOT met'})")
    if args.threads != 1:
        print(f"  full, 1 thread        {t_one:7.3f} s   = {t_one / t_full:5.2f} x the {args.threads}-thread time; "
              f"{t_one / 5.0:4.2f} x the 5 s goal ({'met' if t_one < 5.0 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

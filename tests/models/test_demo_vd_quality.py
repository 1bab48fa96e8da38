"""The committed demo Versatile Diffusion models: what they were trained to do, on held-out scenes."""

from __future__ import annotations

import numpy as np
import pytest

from braindiff_app.cli.train_diffusion import EVAL_START
from braindiff_app.config import DEMO_ASSETS_DIR
from braindiff_app.demo.stimuli import render_scenes
from braindiff_app.stage2 import TIER_DIFFUSION_STEPS

VD = DEMO_ASSETS_DIR / "models" / "vd"


@pytest.fixture(scope="module")
def demo_vd():
    from braindiff_app.models.versatile import load_versatile_diffusion

    if not (VD / "image_unet").is_dir():
        pytest.skip(f"no committed demo models at {VD} (`braindiff demo train-diffusion` writes them)")
    return load_versatile_diffusion(VD)


@pytest.fixture(scope="module")
def held_out():
    images, _, captions = render_scenes(24, seed=1, size=64, start=EVAL_START)  # the world seed it was trained on
    return images, captions


def test_images_generated_from_true_features_are_identified_far_above_chance(demo_vd, held_out):
    from braindiff_app.demo.train_vd import identification_from_features

    images, captions = held_out
    scores = identification_from_features(demo_vd, images, captions,
                                          num_inference_steps=TIER_DIFFUSION_STEPS["demo"])["two_way_identification"]
    # Chance 0.5. Measured here (24 scenes, the tier's 20 steps): the committed models (UNet with its 5500-step
    # low-rate tail) 0.929 / 0.922; with the 1500-step tail 0.908 / 0.929; before any tail 0.868 / 0.929
    # (training.json: 0.94 / 0.92 on 64 scenes). The first bound fails with either earlier UNet.
    assert scores["no_init"] > 0.915
    assert scores["blurred_init_strength_0.75"] > 0.85


def test_strength_zero_gives_back_nearly_the_init_image(demo_vd, held_out):
    from braindiff_app.evaluation.pixel import pixcorr
    from braindiff_app.models.clip_features import clip_text_features, clip_vision_features, unconditional_features
    from braindiff_app.models.img2img import DualGuidedImg2Img

    images, captions = held_out
    c = demo_vd
    vision_uncond, text_uncond = unconditional_features(c.image_encoder, c.text_encoder, c.tokenizer)
    pipe = DualGuidedImg2Img(c.vae, c.image_unet, c.text_unet, c.scheduler)
    out = pipe(images[:8], clip_vision_features(c.image_encoder, images[:8]),
               clip_text_features(c.text_encoder, c.tokenizer, captions[:8]), strength=0.0,
               vision_uncond=vision_uncond, text_uncond=text_uncond, num_inference_steps=10,
               seeds=np.arange(8)).images
    assert out.shape == images[:8].shape
    # Only the demo AutoKL's round trip separates them: close in every image, far closer than another scene.
    same = pixcorr(images[:8], out)
    other = pixcorr(np.roll(images[:8], 1, axis=0), out)
    assert same.min() > 0.8 and same.mean() > other.mean() + 0.4


def test_vision_embedding_tells_the_categories_apart(demo_vd):
    """A linear probe of the pooled CLIP-vision embedding finds each category on held-out scenes (chance AUC 0.5)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from braindiff_app.demo.stimuli import CATEGORIES, content_labels
    from braindiff_app.models.clip_features import clip_vision_features

    images, scenes, _ = render_scenes(600, seed=2, size=64)
    labels = content_labels(scenes)
    pooled = clip_vision_features(demo_vd.image_encoder, images, batch_size=64)[:, 0]
    auc = {}
    for j, category in enumerate(CATEGORIES):
        probe = LogisticRegression(max_iter=2000).fit(pooled[:400], labels[:400, j])
        auc[category] = roc_auc_score(labels[400:, j], probe.decision_function(pooled[400:]))
    # An encoder trained 150 steps scored faces 0.64, bodies 0.54 here; the committed one is trained 1000.
    assert auc["places"] > 0.9 and auc["faces"] > 0.75 and auc["bodies"] > 0.62, auc


def test_autokl_round_trip_keeps_small_figures(demo_vd):
    """The 16x16x4 latent keeps standing figures: pixel correlation inside each figure's box after a round trip."""
    import torch

    images, scenes, _ = render_scenes(200, seed=2, size=64)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        y = demo_vd.vae.decode(demo_vd.vae.encode(x).latent_dist.mean).sample
    out = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    r = []
    for image, back, scene in zip(images, out, scenes, strict=True):
        for obj in scene.objects:
            if obj.kind == "body":
                half = round(obj.size * 64 / 2)
                rows = slice(max(0, round(obj.y * 64) - half), round(obj.y * 64) + half)
                cols = slice(max(0, round(obj.x * 64) - half // 2), round(obj.x * 64) + half // 2)
                r.append(np.corrcoef(image[rows, cols].ravel(), back[rows, cols].ravel())[0, 1])
    assert len(r) > 20
    # The 8x8x4 latent of the earlier AutoKL, of VD's factor 8, gave 0.69 here; the committed 16x16x4 one 0.81.
    assert np.mean(r) > 0.77, np.mean(r)

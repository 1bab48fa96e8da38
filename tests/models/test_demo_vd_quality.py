"""The committed demo Versatile Diffusion models: what they were trained to do, on held-out scenes."""

from __future__ import annotations

import numpy as np
import pytest

from braindiff_app.cli.train_diffusion import EVAL_START
from braindiff_app.config import DEMO_ASSETS_DIR
from braindiff_app.data.stimuli import render_scenes

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
    from braindiff_app.models.demo_train import identification_from_features

    images, captions = held_out
    scores = identification_from_features(demo_vd, images, captions, num_inference_steps=10)["two_way_identification"]
    assert scores["no_init"] > 0.7  # chance 0.5; training.json records 0.82 on 64 scenes at 20 steps
    assert scores["blurred_init_strength_0.75"] > 0.75


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

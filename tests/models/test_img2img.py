import numpy as np
import pytest
import torch

from braindiff_app.models.clip_features import unconditional_features
from braindiff_app.models.img2img import DualGuidedImg2Img
from braindiff_app.models.versatile import load_versatile_diffusion

STEPS = 2


@pytest.fixture(scope="module")
def pipe(vd):
    return DualGuidedImg2Img(vd.vae, vd.image_unet, vd.text_unet, vd.scheduler)


@pytest.fixture(scope="module")
def inputs(vd):
    rng = np.random.default_rng(0)
    n = 3
    vision_uncond, text_uncond = unconditional_features(vd.image_encoder, vd.text_encoder, vd.tokenizer)
    return dict(
        init=rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8),  # resized to the 16 px output
        vision=rng.standard_normal((n, 257, 16)).astype(np.float32),
        text=rng.standard_normal((n, 77, 16)).astype(np.float32),
        uncond=dict(vision_uncond=vision_uncond, text_uncond=text_uncond),
    )


def _run(pipe, inputs, init="init", vision="vision", text="text", **kwargs):
    kwargs = {"num_inference_steps": STEPS, "seeds": np.arange(3), **inputs["uncond"], **kwargs}
    init, vision, text = (inputs[v] if isinstance(v, str) else v for v in (init, vision, text))
    return pipe(init, vision, text, **kwargs).images


def test_output_shape_and_dtype(pipe, inputs):
    images = _run(pipe, inputs)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    assert pipe.image_size == 16


def test_vision_weight_one_is_pure_vision_and_zero_pure_text(pipe, inputs):
    pure_vision = _run(pipe, inputs, text=None)
    np.testing.assert_array_equal(_run(pipe, inputs, vision_weight=1.0), pure_vision)
    other_text = inputs["text"][::-1].copy()
    np.testing.assert_array_equal(_run(pipe, inputs, text=other_text, vision_weight=1.0), pure_vision)
    pure_text = _run(pipe, inputs, vision=None)
    np.testing.assert_array_equal(_run(pipe, inputs, vision_weight=0.0), pure_text)
    assert not np.array_equal(pure_text, pure_vision)
    assert not np.array_equal(_run(pipe, inputs, vision_weight=0.5), pure_vision)


def test_vision_only_matches_a_plain_diffusers_loop(vd_folder, pipe, inputs):
    """Independent reference: the untouched image UNet, guided by the vision features, DDIM from seeded noise."""
    plain = load_versatile_diffusion(vd_folder)
    scheduler, unet, vae = plain.scheduler, plain.image_unet, plain.vae
    scheduler.set_timesteps(STEPS)
    latents = torch.stack([torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(s)) for s in range(3)])
    cond = torch.from_numpy(inputs["vision"])
    uncond = torch.from_numpy(inputs["uncond"]["vision_uncond"]).expand_as(cond)
    with torch.no_grad():
        for t in scheduler.timesteps:
            pred_uncond = unet(latents, t, encoder_hidden_states=uncond).sample
            pred_cond = unet(latents, t, encoder_hidden_states=cond).sample
            latents = scheduler.step(pred_uncond + 7.5 * (pred_cond - pred_uncond), t, latents).prev_sample
        images = vae.decode(latents / vae.config.scaling_factor).sample
    expected = ((images / 2 + 0.5).clamp(0, 1) * 255).round().permute(0, 2, 3, 1).numpy()
    got = _run(pipe, inputs, init=None, text=None)
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_strength_zero_returns_the_autoencoded_init_image(vd, pipe, inputs):
    out = _run(pipe, inputs, strength=0.0, guidance_scale=1.0)
    np.testing.assert_array_equal(_run(pipe, inputs, strength=0.0, vision=inputs["vision"] * 2), out)
    # no denoising step ran: the same as the seeded posterior sample through the decoder
    latents = pipe.prepare_latents(inputs["init"], np.arange(3), torch.zeros(0))
    np.testing.assert_array_equal(out, pipe.decode_latents(latents))


def test_same_seed_same_image_whatever_the_batch(pipe, inputs):
    together = _run(pipe, inputs, batch_size=3)
    one_by_one = _run(pipe, inputs, batch_size=1)
    assert np.abs(together.astype(int) - one_by_one).max() <= 1
    reversed_order = _run(pipe, {**inputs, **{k: inputs[k][::-1].copy() for k in ("init", "vision", "text")}},
                          seeds=np.arange(3)[::-1].copy(), batch_size=2)
    assert np.abs(together.astype(int) - reversed_order[::-1]).max() <= 1
    assert not np.array_equal(_run(pipe, inputs, seeds=np.arange(3) + 10), together)


def test_no_init_image_runs_full_denoising(pipe, inputs):
    images = _run(pipe, inputs, init=None)
    assert images.shape == (3, 16, 16, 3)
    assert not np.array_equal(images, _run(pipe, inputs))


def test_unbatched_guidance_equals_batched(pipe, inputs):
    assert np.abs(_run(pipe, inputs, batched_cfg=False).astype(int) - _run(pipe, inputs)).max() <= 1


@pytest.mark.parametrize(("change", "message"), [
    (dict(strength=1.5), r"strength: expected a float in \[0, 1\]"),
    (dict(vision_weight=-0.1), r"vision_weight: expected a float in \[0, 1\]"),
    (dict(vision=None, text=None), "vision, text: both are None"),
    (dict(text="short"), "init_images, vision, text: expected the same number of images"),
    (dict(vision="wide"), r"vision: expected shape \(n_images, n_tokens, 16\)"),
    (dict(init="float"), "init_images: expected dtype uint8"),
    (dict(seeds=np.arange(2)), r"seeds: expected an integer array of shape \(3,\)"),
    (dict(text_uncond=None), "text_uncond: needed for classifier-free guidance"),
    (dict(num_inference_steps=0), "num_inference_steps: expected a positive integer"),
])
def test_check_inputs_names_the_argument(pipe, inputs, change, message):
    alternatives = {"short": inputs["text"][:2], "wide": np.zeros((3, 257, 8), np.float32),
                    "float": inputs["init"].astype(np.float32)}
    change = {k: alternatives.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    with pytest.raises(ValueError, match=message):
        _run(pipe, inputs, **change)

"""Items 1-6 of docs/reproduce.md: the ``reference`` protocol matches the reference's formulas, written out here
independently of the project's functions; the ``braindiff`` default differs by what the doc says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from braindiff_app.models.vdvae import VDVAE, VDVAEConfig, decode_latents, extract_latents
from braindiff_app.protocol import PROTOCOLS

REF, OURS = PROTOCOLS["reference"], PROTOCOLS["braindiff"]


def _tiny_vdvae(seed: int = 0) -> VDVAE:
    config = VDVAEConfig(name="tiny16", image_size=16, width=16, zdim=4,
                         enc_blocks="16x1,16d2,8x1,8d2,4x1,4d4,1x1", dec_blocks="1x1,4m1,4x1,8m4,8x1,16m8",
                         num_mixtures=2, n_latent_layers=4)
    torch.manual_seed(seed)
    model = VDVAE(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def vdvae():
    torch.set_num_threads(1)
    return _tiny_vdvae()


def _smooth_images(n: int, side: int, seed: int = 0) -> np.ndarray:
    """Photo-like images: low-frequency colour fields plus a little noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)
    big = np.stack([np.asarray(Image.fromarray(s).resize((side, side), Image.BICUBIC)) for s in small])
    return np.clip(big.astype(int) + rng.integers(-8, 9, big.shape), 0, 255).astype(np.uint8)


# -- item 1: posterior samples -----------------------------------------------------------------------------------
def test_item1_reference_latents_are_posterior_samples(vdvae):
    """z = mu + exp(log sigma) * eps per layer (openai's draw_gaussian_diag_samples), eps from image i's seed."""
    images = _smooth_images(2, 16)
    sample = extract_latents(vdvae, images, n_layers=1, mode=REF.vdvae_latents, seed=3, progress=False)
    mean = extract_latents(vdvae, images, n_layers=1, mode=OURS.vdvae_latents, progress=False)
    with torch.no_grad():
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - vdvae.config.pixel_mean) / vdvae.config.pixel_std
        acts = vdvae.encoder(x)
        block = vdvae.decoder.dec_blocks[0]
        state = block.state_in(vdvae.decoder.start_states(2))
        qm, qv = block.posterior(state, acts[block.base])
    for i in range(2):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([3, i]).generate_state(1)[0]))
        eps = torch.randn(qm.shape[1:], generator=g)
        np.testing.assert_allclose(sample[i], (qm[i] + torch.exp(qv[i]) * eps).reshape(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(mean[i], qm[i].reshape(-1).numpy(), atol=1e-5)  # braindiff: the mean


# -- items 2 and 3: the mixture sample, its uniform noise and truncation -----------------------------------------
def _openai_sample(params: np.ndarray, u_mix_raw: np.ndarray, u_pix_raw: np.ndarray, m: int) -> np.ndarray:
    """openai/vdvae's sample_from_discretized_mix_logistic, in numpy; uniforms drawn by uniform_(1e-5, 1 - 1e-5)."""
    eps = 1e-5 + u_mix_raw * (1 - 2e-5)
    u = 1e-5 + u_pix_raw * (1 - 2e-5)
    logit_probs = params[..., :m]
    rest = params[..., m:].reshape(*params.shape[:-1], 3, 3 * m)
    amax = np.argmax(logit_probs - np.log(-np.log(eps)), axis=-1)
    sel = np.eye(m)[amax][..., None, :]
    means = (rest[..., :m] * sel).sum(-1)
    log_scales = np.maximum((rest[..., m:2 * m] * sel).sum(-1), -7.0)
    coeffs = (np.tanh(rest[..., 2 * m:3 * m]) * sel).sum(-1)
    x = means + np.exp(log_scales) * (np.log(u) - np.log(1.0 - u))
    x0 = np.clip(x[..., 0], -1, 1)
    x1 = np.clip(x[..., 1] + coeffs[..., 0] * x0, -1, 1)
    x2 = np.clip(x[..., 2] + coeffs[..., 1] * x0 + coeffs[..., 2] * x1, -1, 1)
    return np.stack([x0, x1, x2], -1)


def test_item2_3_reference_pixels_are_openai_samples(vdvae):
    m = vdvae.config.num_mixtures
    rng = np.random.default_rng(0)
    px_z = torch.randn(2, vdvae.config.width, 16, 16)
    u_mix = torch.from_numpy(rng.random((2, 16, 16, m), dtype=np.float32))
    u_pix = torch.from_numpy(rng.random((2, 16, 16, 3), dtype=np.float32))
    u_mix[0, 0, 0] = 0.0  # the edges, where clamping and rescaling differ most
    u_pix[0, 0, 1] = 1.0 - 1e-7
    with torch.no_grad():
        net = vdvae.decoder.out_net
        got = net.pixels(px_z, REF.vdvae_pixels, (u_mix, u_pix), uniform=REF.vdvae_uniform).numpy()
        params = net.forward(px_z).double().numpy()
        clamped = net.pixels(px_z, "sample", (u_mix, u_pix), uniform=OURS.vdvae_uniform).numpy()
    expected = _openai_sample(params, u_mix.double().numpy(), u_pix.double().numpy(), m)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # item 3: clamping moves only the noise that lies outside [1e-5, 1 - 1e-5] or close to it
    assert not np.allclose(clamped, got, atol=1e-6)


def test_item2_reference_truncates_and_braindiff_rounds(vdvae, monkeypatch):
    """DmolNet.sample: np.minimum(np.maximum(0, (x + 1) * 127.5), 255).astype(uint8); braindiff rounds."""
    seen = []
    original = vdvae.decoder.out_net.pixels

    def record(*args, **kwargs):
        seen.append(original(*args, **kwargs).float().numpy())
        return original(*args, **kwargs)

    monkeypatch.setattr(vdvae.decoder.out_net, "pixels", record)
    latents = np.random.default_rng(1).standard_normal((4, vdvae.config.n_latent())).astype(np.float32)
    kw = dict(seeds=np.arange(4), progress=False, pixels="sample", uniform="rescale")
    trunc = decode_latents(vdvae, latents, quantise=REF.vdvae_quantise, **kw)
    rounded = decode_latents(vdvae, latents, quantise=OURS.vdvae_quantise, **kw)
    x = seen[0]
    np.testing.assert_array_equal(seen[0], seen[1])  # same seeds, same samples
    np.testing.assert_array_equal(trunc, np.minimum(np.maximum(0.0, (x + 1.0) * 127.5), 255.0).astype(np.uint8))
    np.testing.assert_array_equal(rounded, np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8))
    unclipped = np.abs(x) < 1
    brighter = (rounded.astype(int) - trunc)[unclipped]
    assert set(np.unique(brighter)) <= {0, 1}
    assert 0.4 < brighter.mean() < 0.6  # about half one level brighter (docs/reproduce.md, item 2)


# -- item 4: PIL bilinear input resize ---------------------------------------------------------------------------
def test_item4_reference_vdvae_input_is_pil_bilinear(vdvae):
    images = _smooth_images(3, 40)
    pil = np.stack([np.asarray(Image.fromarray(im).resize((16, 16), Image.BILINEAR)) for im in images])
    got = extract_latents(vdvae, images, mode="mean", resample=REF.vdvae_resize, progress=False)
    np.testing.assert_allclose(got, extract_latents(vdvae, pil, mode="mean", progress=False), atol=1e-6)
    # braindiff's torch resize of 425 -> 64 differs from PIL's by one level on a few percent of sub-pixels
    from braindiff_app.images import resize_images

    big = _smooth_images(4, 425, seed=2)
    ours = resize_images(big, 64, resample=OURS.vdvae_resize).astype(int)
    ref = np.stack([np.asarray(Image.fromarray(im).resize((64, 64), Image.BILINEAR)) for im in big]).astype(int)
    diff = np.abs(ours - ref)
    assert diff.max() <= 1 and 0.005 < (diff > 0).mean() < 0.2


# -- item 5: CLIP-vision input and the unconditional image -------------------------------------------------------
def _reference_clip_input(images: np.ndarray, size: int) -> torch.Tensor:
    """torchvision 0.13 resize of a PIL image (default: PIL bilinear) to 512, to_tensor, *2-1; VD's clip wrapper
    (x+1)/2 -> numpy; the CLIP
    processor (transformers 4.19-4.25): to_pil_image ((x*255).astype(uint8)), resize shortest edge (bicubic), center
    crop, /255, normalise."""
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    out = []
    for image in images:
        img = Image.fromarray(image).resize((512, 512), Image.BILINEAR)
        t = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255) * 2 - 1
        v = ((t + 1) / 2).numpy().transpose(1, 2, 0)
        pil = Image.fromarray((v * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        out.append((torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255 - mean) / std)
    return torch.stack(out)


def _encode(encoder, pixels):
    with torch.no_grad():
        hidden = encoder.vision_model(pixel_values=pixels).last_hidden_state
        tokens = encoder.visual_projection(encoder.vision_model.post_layernorm(hidden))
    return (tokens / tokens[:, :1].norm(dim=-1, keepdim=True)).numpy()


def test_item5_reference_clip_input(vd):
    from braindiff_app.models.clip_features import clip_vision_features, reference_pixel_values

    images = _smooth_images(2, 42)
    size = vd.image_encoder.config.image_size
    expected = _reference_clip_input(images, size)
    np.testing.assert_allclose(reference_pixel_values(images, size), expected, atol=1e-6)
    got = clip_vision_features(vd.image_encoder, images, resize=REF.clip_resize)
    np.testing.assert_allclose(got, _encode(vd.image_encoder, expected), atol=1e-5)
    assert not np.allclose(clip_vision_features(vd.image_encoder, images, resize=OURS.clip_resize), got, atol=1e-4)


def test_item5_reference_unconditional_image_is_127(vd):
    from braindiff_app.models.clip_features import unconditional_features

    size = vd.image_encoder.config.image_size
    zero = torch.zeros(3, size, size)  # the reference's all-zero image in [-1, 1]
    u8 = (((zero + 1) / 2).numpy() * 255).astype(np.uint8)  # its processor's float -> uint8
    assert u8.max() == u8.min() == 127
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    pixels = ((torch.from_numpy(u8).float() / 255 - mean) / std)[None]
    vision, _ = unconditional_features(vd.image_encoder, vd.text_encoder, vd.tokenizer, image=REF.clip_uncond)
    np.testing.assert_allclose(vision, _encode(vd.image_encoder, pixels), atol=1e-5)
    grey, _ = unconditional_features(vd.image_encoder, vd.text_encoder, vd.tokenizer, image=OURS.clip_uncond)
    assert not np.allclose(grey, vision, atol=1e-6)  # 0.5 vs 127/255


# -- item 6: the diffusion start -----------------------------------------------------------------------------------
def test_item6_reference_noises_at_741_and_denoises_from_721(vd):
    """LDM: ddim_timesteps = range(0, 1000, 1000 // 50) + 1; stochastic_encode at ddim_timesteps[t_enc] with
    t_enc = int(0.75 * 50); decode over flip(ddim_timesteps[:t_enc])."""
    from diffusers import DDIMScheduler

    from braindiff_app.demo.vd import scheduler_config
    from braindiff_app.models.img2img import DualGuidedImg2Img

    ddim_timesteps = np.asarray(range(0, 1000, 1000 // 50)) + 1
    t_enc = int(0.75 * 50)
    noised_at, run = ddim_timesteps[t_enc], np.flip(ddim_timesteps[:t_enc])
    assert (noised_at, run[0], len(run)) == (741, 721, 37)

    pipe = DualGuidedImg2Img.__new__(DualGuidedImg2Img)  # only the scheduler steps are exercised
    pipe.scheduler = DDIMScheduler(**scheduler_config())
    timesteps = pipe.get_timesteps(50, 0.75)
    np.testing.assert_array_equal(timesteps.numpy(), run)
    assert int(pipe.noise_timestep(timesteps, REF.noise_timestep)) == 741
    assert int(pipe.noise_timestep(timesteps, OURS.noise_timestep)) == 721
    # q(x_t | x_0) at the reference's timestep, written out
    acp = pipe.scheduler.alphas_cumprod
    x0, noise = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    noised = pipe.scheduler.add_noise(x0, noise, pipe.noise_timestep(timesteps, "ldm"))
    np.testing.assert_allclose(noised, acp[741].sqrt() * x0 + (1 - acp[741]).sqrt() * noise, atol=1e-6)


def test_item6_protocol_reaches_the_img2img_start(vd, monkeypatch):
    from braindiff_app.models.img2img import DualGuidedImg2Img

    pipe = DualGuidedImg2Img(vd.vae, vd.image_unet, vd.text_unet, vd.scheduler)
    seen = []
    monkeypatch.setattr(pipe, "prepare_latents", lambda init, seeds, timesteps, noise_t: seen.append(
        (int(timesteps[0]), int(noise_t))) or torch.zeros(len(seeds), 4, 8, 8))
    monkeypatch.setattr(pipe, "denoise", lambda latents, *a, **k: latents)
    rng = np.random.default_rng(0)
    args = (rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8), rng.standard_normal((1, 257, 16), np.float32),
            None)
    for protocol in (REF, OURS):
        pipe(*args, guidance_scale=1.0, num_inference_steps=50, noise_timestep=protocol.noise_timestep)
    assert seen == [(721, 741), (721, 721)]

"""VDVAE: checkpoint compatibility with openai/vdvae, latent extraction, decoding, and the committed demo model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from braindiff_app.config import DEMO_ASSETS_DIR
from braindiff_app.models.vdvae import (
    VDVAE,
    VDVAEConfig,
    decode_latents,
    extract_latents,
    load_demo_vdvae,
    load_vdvae,
    save_vdvae,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# -- the official imagenet64 checkpoint's names and shapes, written from reading openai/vdvae (vae.py, hps.py) ----
# Every conv has a bias; Block = c1 1x1 (in -> mid), c2/c3 3x3 (1x1 at resolutions <= 2), c4 1x1 (mid -> out).
IMAGENET64_ENC = "64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5"
IMAGENET64_DEC = "1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12"
# Spot checks typed out by hand (index arithmetic: the encoder's 4d4 block is number 59 of 65).
EXPLICIT_ENTRIES = {
    "encoder.in_conv.weight": (512, 3, 3, 3),
    "encoder.enc_blocks.0.c1.weight": (128, 512, 1, 1),
    "encoder.enc_blocks.0.c2.weight": (128, 128, 3, 3),
    "encoder.enc_blocks.59.c3.weight": (128, 128, 3, 3),
    "encoder.enc_blocks.60.c2.weight": (128, 128, 1, 1),
    "encoder.enc_blocks.64.c4.bias": (512,),
    "decoder.dec_blocks.0.enc.c1.weight": (128, 1024, 1, 1),
    "decoder.dec_blocks.0.enc.c2.weight": (128, 128, 1, 1),
    "decoder.dec_blocks.0.enc.c4.weight": (32, 128, 1, 1),
    "decoder.dec_blocks.0.prior.c4.weight": (544, 128, 1, 1),
    "decoder.dec_blocks.0.z_proj.weight": (512, 16, 1, 1),
    "decoder.dec_blocks.2.resnet.c2.weight": (128, 128, 3, 3),
    "decoder.dec_blocks.74.resnet.c4.weight": (512, 128, 1, 1),
    "decoder.bias_xs.0": (1, 512, 1, 1),
    "decoder.bias_xs.5": (1, 512, 64, 64),
    "decoder.out_net.out_conv.weight": (100, 512, 1, 1),
    "decoder.out_net.out_conv.bias": (100,),
    "decoder.gain": (1, 512, 1, 1),
    "decoder.bias": (1, 512, 1, 1),
}


def _resolutions(spec: str) -> list[int]:
    out: list[int] = []
    for item in spec.split(","):
        if "x" in item:
            res, count = item.split("x")
            out += [int(res)] * int(count)
        else:
            out.append(int(re.split("[dm]", item)[0]))
    return out


def _imagenet64_manifest() -> dict[str, tuple[int, ...]]:
    width, zdim, mid = 512, 16, 128
    shapes: dict[str, tuple[int, ...]] = {"encoder.in_conv.weight": (width, 3, 3, 3), "encoder.in_conv.bias": (width,)}

    def block(prefix: str, cin: int, cout: int, res: int) -> None:
        k = 3 if res > 2 else 1
        for name, shape in (("c1", (mid, cin, 1, 1)), ("c2", (mid, mid, k, k)), ("c3", (mid, mid, k, k)),
                            ("c4", (cout, mid, 1, 1))):
            shapes[f"{prefix}.{name}.weight"] = shape
            shapes[f"{prefix}.{name}.bias"] = (shape[0],)

    for i, res in enumerate(_resolutions(IMAGENET64_ENC)):
        block(f"encoder.enc_blocks.{i}", width, width, res)
    dec = _resolutions(IMAGENET64_DEC)
    for i, res in enumerate(dec):
        block(f"decoder.dec_blocks.{i}.enc", 2 * width, 2 * zdim, res)
        block(f"decoder.dec_blocks.{i}.prior", width, 2 * zdim + width, res)
        shapes[f"decoder.dec_blocks.{i}.z_proj.weight"] = (width, zdim, 1, 1)
        shapes[f"decoder.dec_blocks.{i}.z_proj.bias"] = (width,)
        block(f"decoder.dec_blocks.{i}.resnet", width, width, res)
    for j, res in enumerate(sorted(set(dec))):
        shapes[f"decoder.bias_xs.{j}"] = (1, width, res, res)
    shapes["decoder.out_net.out_conv.weight"] = (100, width, 1, 1)
    shapes["decoder.out_net.out_conv.bias"] = (100,)
    shapes["decoder.gain"] = shapes["decoder.bias"] = (1, width, 1, 1)
    return shapes


def _tiny_config(**changes) -> VDVAEConfig:
    base = dict(name="tiny16", image_size=16, width=16, zdim=4, enc_blocks="16x1,16d2,8x1,8d2,4x1,4d4,1x1",
                dec_blocks="1x1,4m1,4x1,8m4,8x1,16m8", num_mixtures=2, n_latent_layers=4)
    return VDVAEConfig(**{**base, **changes})


def _make_model(seed: int = 0, **changes) -> VDVAE:
    torch.manual_seed(seed)
    model = VDVAE(_tiny_config(**changes)).eval()
    with torch.no_grad():  # the zero-initialised prior head would make every layer identical: randomise it
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def tiny_model() -> VDVAE:
    return _make_model()


def _images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# -- checkpoint compatibility -----------------------------------------------------------------------------------
def test_imagenet64_state_dict_matches_official_manifest():
    with torch.device("meta"):
        model = VDVAE(VDVAEConfig.imagenet64())
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = _imagenet64_manifest()
    assert sorted(actual) == sorted(expected)
    assert actual == expected
    for name, shape in EXPLICIT_ENTRIES.items():
        assert actual[name] == shape, name
    n_params = sum(int(np.prod(s)) for s in actual.values())
    assert n_params == 125_005_860  # openai/vdvae's README: "125M parameter model"
    assert len(actual) == 2482


@pytest.mark.parametrize("prefix", ["", "module."])  # EMA checkpoints have none; DDP-saved ones have "module."
def test_load_vdvae_loads_imagenet64_names_strictly(tmp_path, prefix):
    rng = np.random.default_rng(0)
    manifest = _imagenet64_manifest()
    values = {k: float(rng.normal()) for k in manifest}
    # One random value per tensor, expanded (stride 0): the file holds one float per entry, not 500 MB.
    state = {prefix + k: torch.tensor(v).expand(manifest[k]) for k, v in values.items()}
    path = tmp_path / "imagenet64-iter-1600000-model-ema.th"
    torch.save(state, path)
    model = load_vdvae(path)
    assert not model.training
    loaded = model.state_dict()
    assert set(loaded) == set(values)
    for name in ("encoder.in_conv.weight", "decoder.dec_blocks.74.resnet.c4.weight", "decoder.bias_xs.5"):
        assert loaded[name].shape == manifest[name]
        assert float(loaded[name].flatten()[-1]) == pytest.approx(values[name])
    assert all(not p.requires_grad for p in model.parameters())


def test_load_vdvae_reports_missing_unexpected_and_shape(tmp_path):
    model = _make_model()
    state = model.state_dict()
    path = tmp_path / "w.th"
    broken = dict(state)
    broken.pop("decoder.gain")
    broken["decoder.extra"] = torch.zeros(1)
    torch.save(broken, path)
    with pytest.raises(ValueError, match=r"missing 1 \(e.g. decoder.gain\).*unexpected 1"):
        load_vdvae(path, model.config)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"shape .*expected .* got"):
        load_vdvae(path, _tiny_config(zdim=5))
    with pytest.raises(FileNotFoundError, match="BRAINDIFF_VDVAE_CHECKPOINT"):
        load_vdvae(tmp_path / "absent.th")


def test_save_and_load_round_trip(tmp_path, tiny_model):
    save_vdvae(tiny_model, tmp_path / "vdvae")
    again = load_demo_vdvae(tmp_path)  # the models folder holding vdvae/
    for (k, a), (_, b) in zip(tiny_model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert again.config == tiny_model.config
    with pytest.raises(FileNotFoundError, match="train-vdvae"):
        load_demo_vdvae(tmp_path / "nothing")


# -- config -----------------------------------------------------------------------------------------------------
def test_config_latent_layout_and_json(tmp_path):
    config = VDVAEConfig.imagenet64()
    assert config.n_layers_total == 75
    shapes = config.latent_shapes(31)
    assert [s[1] for s in shapes] == [1] * 2 + [4] * 4 + [8] * 8 + [16] * 16 + [32]
    assert config.n_latent(31) == 2 * 16 + 4 * 256 + 8 * 1024 + 16 * 4096 + 16384 == 91168
    config.to_json(tmp_path / "c.json")
    assert VDVAEConfig.from_json(tmp_path / "c.json") == config
    demo = VDVAEConfig.demo()
    assert VDVAEConfig.from_dict(json.loads(json.dumps(demo.to_dict()))) == demo
    with pytest.raises(ValueError, match="unknown keys"):
        VDVAEConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="n_layers: expected 1..75"):
        config.n_latent(76)
    with pytest.raises(ValueError, match="image_size 32 must be"):
        VDVAEConfig(image_size=32)


# -- extraction and decoding ------------------------------------------------------------------------------------
def test_extract_latents_shape_and_modes(tiny_model):
    images = _images(5)
    means = extract_latents(tiny_model, images, progress=False)
    assert means.shape == (5, 4 * (1 + 16 + 16 + 64)) and means.dtype == np.float32
    assert extract_latents(tiny_model, images, n_layers=2, progress=False).shape == (5, 4 * 17)
    # Means do not depend on batching; samples are seeded per image, so neither do they.
    np.testing.assert_allclose(extract_latents(tiny_model, images, batch_size=2, progress=False), means, atol=1e-5)
    s1 = extract_latents(tiny_model, images, mode="sample", seed=3, progress=False)
    s2 = extract_latents(tiny_model, images, mode="sample", seed=3, batch_size=3, progress=False)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    assert not np.allclose(s1, means)
    assert not np.allclose(extract_latents(tiny_model, images, mode="sample", seed=4, progress=False), s1)
    # Larger images are resized to the model's size.
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    assert extract_latents(tiny_model, big, progress=False).shape == means.shape


def test_extract_latents_rejects_bad_input(tiny_model):
    with pytest.raises(ValueError, match=r"images: expected uint8 array of shape \(n_images, height, width, 3\)"):
        extract_latents(tiny_model, np.zeros((2, 16, 16, 3), np.float32), progress=False)
    with pytest.raises(TypeError, match="images: expected a numpy array"):
        extract_latents(tiny_model, [[0]], progress=False)
    with pytest.raises(ValueError, match="mode: expected one of 'mean', 'sample'"):
        extract_latents(tiny_model, _images(1), mode="median", progress=False)
    with pytest.raises(TypeError, match="model: expected a VDVAE"):
        extract_latents(object(), _images(1), progress=False)


@pytest.mark.parametrize("pixels", ["mode", "sample"])
def test_decode_is_deterministic_per_seed_and_batch_independent(tiny_model, pixels):
    latents = extract_latents(tiny_model, _images(6), progress=False)
    seeds = np.array([5, 6, 7, 8, 9, 10])
    out = decode_latents(tiny_model, latents, seeds=seeds, pixels=pixels, progress=False)
    assert out.shape == (6, 16, 16, 3) and out.dtype == np.uint8
    again = decode_latents(tiny_model, latents, seeds=seeds, pixels=pixels, progress=False)
    np.testing.assert_array_equal(out, again)
    order = np.array([4, 1, 5, 0, 3, 2])
    shuffled = decode_latents(tiny_model, latents[order], seeds=seeds[order], batch_size=4, pixels=pixels,
                              progress=False)
    np.testing.assert_array_equal(shuffled, out[order])
    other = decode_latents(tiny_model, latents, seeds=seeds + 100, pixels=pixels, progress=False)
    assert (other != out).any()  # the prior layers (and pixel noise) follow the seed


def test_decode_temperature_zero_and_errors(tiny_model):
    latents = extract_latents(tiny_model, _images(3), progress=False)
    a = decode_latents(tiny_model, latents, temperature=0.0, seeds=np.array([1, 2, 3]), progress=False)
    b = decode_latents(tiny_model, latents, temperature=0.0, seeds=np.array([7, 8, 9]), progress=False)
    np.testing.assert_array_equal(a, b)  # no prior noise at temperature 0 in "mode" pixels
    with pytest.raises(ValueError, match=r"latents: expected shape \(n_images, 388\)"):
        decode_latents(tiny_model, latents[:, :-1], progress=False)
    with pytest.raises(ValueError, match=r"seeds: expected an int array of shape \(3,\)"):
        decode_latents(tiny_model, latents, seeds=np.array([1, 2]), progress=False)
    with pytest.raises(ValueError, match="pixels: expected one of"):
        decode_latents(tiny_model, latents, pixels="mean", progress=False)


def test_training_step_lowers_the_loss():
    from braindiff_app.demo.train_vdvae import train_vdvae

    torch.manual_seed(0)
    model = VDVAE(_tiny_config())
    images = np.repeat(np.repeat(np.repeat(_images(8, size=4), 4, 1), 4, 2), 1, 0)  # blocky, learnable
    result = train_vdvae(model, images, steps=12, batch_size=8, lr=3e-3, warmup=3, seed=0, progress=False)
    assert np.nanmean(result.elbo[-3:]) < result.elbo[0] - 0.15
    assert not result.model.training


# -- the committed demo model -----------------------------------------------------------------------------------
def test_demo_model_reconstructs_held_out_scenes_better_than_mean_image():
    from braindiff_app.demo.train_vdvae import reconstruction_scores, render_world_images

    model = load_demo_vdvae(DEMO_ASSETS_DIR / "models")
    assert model.config == VDVAEConfig.demo()
    held_out = render_world_images(24, world_seed=0, start=200_000)
    baseline = render_world_images(64, world_seed=1000).mean(0).round().astype(np.uint8)
    scores = reconstruction_scores(model, held_out, baseline)
    assert scores["pixcorr"].mean() > scores["pixcorr_baseline"].mean() + 0.2
    assert scores["ssim"].mean() > scores["ssim_baseline"].mean() + 0.05


def test_reconstruction_scores_are_evaluations_pixcorr_and_ssim(tiny_model, monkeypatch):
    import braindiff_app.demo.train_vdvae as train_vdvae
    import braindiff_app.evaluation.metrics as metrics

    assert not hasattr(train_vdvae, "_pixcorr") and not hasattr(train_vdvae, "_ssim")
    images = _images(3, size=24, seed=4)
    baseline = images.mean(0).round().astype(np.uint8)
    scores = train_vdvae.reconstruction_scores(tiny_model, images, baseline)
    assert {k: v.shape for k, v in scores.items()} == {k: (3,) for k in ("pixcorr", "ssim", "pixcorr_baseline",
                                                                         "ssim_baseline")}
    from braindiff_app.evaluation import pixcorr, ssim

    np.testing.assert_array_equal(scores["pixcorr_baseline"], pixcorr(images, np.broadcast_to(baseline, images.shape)))
    np.testing.assert_array_equal(scores["ssim_baseline"], ssim(images, np.broadcast_to(baseline, images.shape)))
    calls = []
    monkeypatch.setattr(metrics, "pixcorr", lambda gt, rec: calls.append(("pixcorr", rec.shape)) or np.zeros(3))
    monkeypatch.setattr(metrics, "ssim", lambda gt, rec, variant: calls.append((variant, rec.shape)) or np.ones(3))
    scores = train_vdvae.reconstruction_scores(tiny_model, images, baseline)
    assert scores["pixcorr"].tolist() == [0.0] * 3 and scores["ssim"].tolist() == [1.0] * 3
    # the 16 px decodes reach the metrics resized to the ground truth's 24 px
    assert calls == [("pixcorr", (3, 24, 24, 3)), ("2d", (3, 24, 24, 3))] * 2

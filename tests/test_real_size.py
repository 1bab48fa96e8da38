"""A Versatile Diffusion folder at real size (the real repo's configs and class names, random fp16 weights), run
through doctor, load, extract clip and two img2img steps at 64 px. Slow (several GB, minutes): ``-m slow``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

# shi-labs/versatile-diffusion's diffusers configs (image_unet, text_unet, vae), as published.
_UNET = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768, "downsample_padding": 1, "flip_sin_to_cos": True,
    "freq_shift": 0, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
}
IMAGE_UNET = {"_class_name": "UNet2DConditionModel", **_UNET, "in_channels": 4, "out_channels": 4,
              "sample_size": 64,
              "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
              "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
TEXT_UNET = {"_class_name": "UNetFlatConditionModel", **_UNET, "in_channels": [768, 1, 1],
             "out_channels": [768, 1, 1], "sample_size": 64,
             "down_block_types": ["CrossAttnDownBlockFlat"] * 3 + ["DownBlockFlat"],
             "up_block_types": ["UpBlockFlat"] + ["CrossAttnUpBlockFlat"] * 3}
VAE = {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
       "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3,
       "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 256}


def _random_fp16(model, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) * 0.02).half() for k, v in model.state_dict().items()}


def _save_diffusers(folder, cls, config: dict, seed: int) -> int:
    from accelerate import init_empty_weights
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    with init_empty_weights():
        model = cls.from_config(cls.load_config(folder))
    save_file(_random_fp16(model, seed), str(folder / "diffusion_pytorch_model.safetensors"))
    return sum(p.numel() for p in model.parameters())


def _save_transformers(folder, cls, config, seed: int) -> None:
    from accelerate import init_empty_weights
    from safetensors.torch import save_file

    with init_empty_weights():
        model = cls(config)
    config.save_pretrained(folder)
    save_file(_random_fp16(model, seed), str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def real_vd(tmp_path_factory):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from braindiff_app.demo.vd import scheduler_config, train_clip_tokenizer
    from braindiff_app.models._vd_compat import text_unet_class

    folder = tmp_path_factory.mktemp("real") / "vd"
    counts = {"image_unet": _save_diffusers(folder / "image_unet", UNet2DConditionModel, IMAGE_UNET, 0),
              "text_unet": _save_diffusers(folder / "text_unet", text_unet_class(), TEXT_UNET, 1)}
    _save_diffusers(folder / "vae", AutoencoderKL, VAE, 2)
    _save_transformers(folder / "image_encoder", CLIPVisionModelWithProjection, CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=768), 3)
    tokenizer = train_clip_tokenizer(["a photo of a cat", "a red ball on the grass"] * 4, vocab_size=600)
    _save_transformers(folder / "text_encoder", CLIPTextModelWithProjection, CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, projection_dim=768, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id), 4)
    tokenizer.save_pretrained(folder / "tokenizer")
    DDIMScheduler(**scheduler_config()).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "VersatileDiffusionPipeline", "text_unet": ["versatile_diffusion", "UNetFlatConditionModel"],
        "image_unet": ["diffusers", "UNet2DConditionModel"]}))
    return folder, counts


@pytest.mark.parametrize("sample_size", [64, None], ids=["sample_size-64", "sample_size-null"])
def test_real_size_folder_doctor_load_extract_and_img2img(real_vd, sample_size, tmp_path):
    from braindiff_app.config import load_settings
    from braindiff_app.doctor import diagnose, format_report
    from braindiff_app.extraction import extract_clip_features
    from braindiff_app.models.clip_features import unconditional_features
    from braindiff_app.models.img2img import DualGuidedImg2Img
    from braindiff_app.models.versatile import load_versatile_diffusion

    torch.set_num_threads(2)
    folder, counts = real_vd
    config_path = folder / "image_unet" / "config.json"
    config_path.write_text(json.dumps({**IMAGE_UNET, "sample_size": sample_size}))
    assert 1.6e9 < counts["text_unet"] < 1.8e9 and 0.8e9 < counts["image_unet"] < 0.9e9  # 1.71 B and 0.86 B
    settings = load_settings(tier="real", home=tmp_path / "home", vd_dir=folder, device="cpu", dtype="float32")

    # doctor: a report, stage 2's files found
    report = format_report(diagnose(settings), settings)
    assert str(folder / "image_unet" / "config.json") not in report or "missing" not in report.lower()

    # load: only the text UNet's transformer blocks (267 M of its 1.71 B parameters)
    vd = load_versatile_diffusion(folder, text_unet="attention")
    kept = sum(p.numel() for p in vd.text_unet.parameters())
    assert 2.5e8 < kept < 2.9e8, kept

    # extract clip: encoders only, on a prepared subject of two 64 px images
    prepared = settings.subject_dir("prepared", 1)
    prepared.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        np.save(prepared / f"images_{split}.npy", rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
        (prepared / f"captions_{split}.json").write_text(json.dumps([["a photo of a cat"], ["a red ball"]]))
    (prepared / "meta.json").write_text("{}")
    out = extract_clip_features(settings, 1, progress=False)
    assert np.load(out / "clip_vision_test.npy").shape == (2, 257, 768)
    assert np.load(out / "clip_text_test.npy").shape == (2, 77, 768)

    # two img2img steps at 64 px
    if sample_size is None:
        with pytest.warns(UserWarning, match="sample_size is null"):
            assert DualGuidedImg2Img(vd.vae, vd.image_unet, vd.text_unet, vd.scheduler).image_size == 512
    pipe = DualGuidedImg2Img(vd.vae, vd.image_unet, vd.text_unet, vd.scheduler, image_size=64)
    v_u, t_u = unconditional_features(vd.image_encoder, vd.text_encoder, vd.tokenizer)
    images = pipe(rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8), rng.standard_normal((1, 257, 768), np.float32),
                  rng.standard_normal((1, 77, 768), np.float32), vision_uncond=v_u, text_uncond=t_u,
                  num_inference_steps=2, strength=1.0).images
    assert images.shape == (1, 64, 64, 3) and images.dtype == np.uint8

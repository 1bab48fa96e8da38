import shutil
from dataclasses import replace

import pytest
import torch

from braindiff_app.demo.train_vd import TrainConfig, stages_from_folder, train_demo_vd
from braindiff_app.demo.vd import train_clip_tokenizer
from tests.models.conftest import CAPTIONS, _make_vd_folder


def test_tokenizer_is_clip_compatible_and_round_trips(tmp_path):
    from transformers import CLIPTokenizer

    tokenizer = train_clip_tokenizer(CAPTIONS, vocab_size=600)
    ids = tokenizer("A red ball, on the GRASS!").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(ids[1:4]) == ["a</w>", "red</w>", "ball</w>"]
    tokenizer.save_pretrained(tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert loaded.model_max_length == 77
    assert loaded("a smiling face", padding="max_length", max_length=77).input_ids == \
        tokenizer("a smiling face", padding="max_length", max_length=77).input_ids


@pytest.mark.slow
def test_training_resumes_and_saves_a_loadable_folder(tmp_path):
    from braindiff_app.demo.stimuli import render_scenes
    from braindiff_app.models.versatile import load_versatile_diffusion

    images, _, captions = render_scenes(64, seed=1, size=64)
    config = TrainConfig(clip_steps=2, vae_steps=2, unet_steps=2, unet_tail_steps=2, clip_batch=8, vae_batch=4,
                         unet_batch=4)
    train_demo_vd(images, captions, tmp_path / "vd", tmp_path / "work", config, progress=False)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["clip.pt", "unet.pt", "unet_tail.pt", "vae.pt"]
    first = (tmp_path / "vd" / "image_unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    train_demo_vd(images, captions, tmp_path / "vd", tmp_path / "work", config, progress=False)  # resumes
    assert (tmp_path / "vd" / "image_unet" / "diffusion_pytorch_model.safetensors").read_bytes() == first
    assert load_versatile_diffusion(tmp_path / "vd").image_encoder.config.image_size == 32
    # The same UNet stage (same seed, same CLIP and AutoKL) without averaging saves the last weights instead of
    # their moving average (the tail then starts from them): the files differ.
    last_work = tmp_path / "work_last"
    last_work.mkdir()
    for stage in ("clip.pt", "vae.pt"):
        shutil.copy(tmp_path / "work" / stage, last_work / stage)
    train_demo_vd(images, captions, tmp_path / "vd_last", last_work, replace(config, unet_ema=0.0), progress=False)
    last = (tmp_path / "vd_last" / "image_unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert len(last) == len(first) and last != first


def test_a_saved_folder_stands_in_for_the_first_three_stages(tmp_path):
    """stages_from_folder: clip/vae/unet checkpoints holding the folder's weights (what train_demo_vd loads to
    resume), each with the folder's recorded final loss; existing checkpoints are kept."""
    import json

    from braindiff_app.models.versatile import load_versatile_diffusion

    folder = _make_vd_folder(tmp_path / "vd", seed=3)
    with pytest.raises(ValueError, match=r"training\.json: no readable final_losses"):
        stages_from_folder(folder, tmp_path / "none")
    (folder / "training.json").write_text(json.dumps({"final_losses": {"clip": 0.9, "unet": 0.05}}))
    with pytest.raises(ValueError, match=r"training\.json: no vae stage"):
        stages_from_folder(folder, tmp_path / "none")
    (folder / "training.json").write_text(json.dumps({"final_losses": {"clip": 0.9, "vae": 0.1, "unet": 0.05}}))
    work = tmp_path / "work"
    assert stages_from_folder(folder, work) == ["clip", "vae", "unet"]  # saved before the tail: the tail trains
    saved = load_versatile_diffusion(folder, dtype=torch.float32)
    for stage, names in (("clip", ("image_encoder", "text_encoder")), ("vae", ("vae",)),
                         ("unet", ("image_unet", "text_unet"))):
        state = torch.load(work / f"{stage}.pt", weights_only=True)
        assert state["losses"] == [{"clip": 0.9, "vae": 0.1, "unet": 0.05}[stage]]
        assert state["scaling_factor"] == saved.vae.config.scaling_factor
        for name, weights in zip(names, state["weights"], strict=True):
            expected = getattr(saved, name).state_dict()
            assert weights.keys() == expected.keys()
            assert all(torch.equal(weights[k], expected[k]) for k in expected)
    before = (work / "unet.pt").read_bytes()
    assert stages_from_folder(folder, work) == [] and (work / "unet.pt").read_bytes() == before
    # A folder whose UNet already had its tail stands in for all four stages: nothing is left to train.
    (folder / "training.json").write_text(json.dumps({"final_losses": {"clip": 0.9, "vae": 0.1, "unet": 0.05,
                                                                       "unet_tail": 0.04}}))
    assert stages_from_folder(folder, tmp_path / "work4") == ["clip", "vae", "unet", "unet_tail"]
    tail = torch.load(tmp_path / "work4" / "unet_tail.pt", weights_only=True)
    assert tail["losses"] == [0.04] and torch.equal(tail["weights"][0]["conv_in.weight"],
                                                    saved.image_unet.state_dict()["conv_in.weight"])


def test_an_eight_channel_latent_runs_through_the_models_and_a_four_channel_stage_is_refused(tmp_path):
    from braindiff_app.demo.stimuli import render_scenes
    from braindiff_app.demo.vd import build_components, train_clip_tokenizer

    tokenizer = train_clip_tokenizer(["a red ball", "a blue house", "a face"] * 4, 300)
    c = build_components(tokenizer, "tiny", latent_channels=8)
    assert c.vae.config.latent_channels == 8
    assert c.image_unet.config.in_channels == c.image_unet.config.out_channels == 8
    x = torch.zeros(2, 3, 16, 16)
    latents = c.vae.encode(x).latent_dist.mean
    assert latents.shape == (2, 8, 8, 8)
    context = torch.zeros(2, 3, c.image_unet.config.cross_attention_dim)
    assert c.image_unet(latents, 10, encoder_hidden_states=context).sample.shape == latents.shape
    with pytest.raises(ValueError, match="latent_channels: expected 4 .* or 8, got 6"):
        build_components(tokenizer, "tiny", latent_channels=6)
    # A work folder holding a 4-channel AutoKL stage: resuming with 8 channels is refused by name, not by torch's
    # list of mismatched tensors.
    images, _, captions = render_scenes(8, seed=1, size=64)
    config = TrainConfig(latent_channels=8)
    four = build_components(train_clip_tokenizer([c for cs in captions for c in cs], config.vocab_size), "demo")
    work = tmp_path / "work"
    work.mkdir()
    torch.save({"weights": [four.image_encoder.state_dict(), four.text_encoder.state_dict()], "losses": [1.0],
                "scaling_factor": 1.0}, work / "clip.pt")
    torch.save({"weights": [four.vae.state_dict()], "losses": [1.0], "scaling_factor": 1.0}, work / "vae.pt")
    with pytest.raises(ValueError, match=r"vae\.pt: a vae stage of models of another shape .*--latent-channels than 8"):
        train_demo_vd(images, captions, tmp_path / "vd", work, config, progress=False)

import shutil

import numpy as np
import pytest
import torch

from braindiff_app.models.versatile import COMPONENTS, load_versatile_diffusion, missing_files


def test_loads_every_component_in_eval_mode(vd):
    assert {"vae", "image_unet", "text_unet", "image_encoder", "text_encoder", "tokenizer", "scheduler"} == set(
        COMPONENTS)
    assert type(vd.text_unet).__name__ == "UNetFlatConditionModel"
    assert type(vd.scheduler).__name__ == "DDIMScheduler"
    assert vd.tokenizer.model_max_length == 77
    assert not vd.image_unet.training and not any(p.requires_grad for p in vd.image_encoder.parameters())
    assert vd.image_unet.dtype == torch.float32


def test_dtype_argument_casts_weights(vd_folder):
    assert load_versatile_diffusion(vd_folder, dtype=torch.bfloat16).vae.dtype == torch.bfloat16


def test_missing_files_are_each_named(vd_folder, tmp_path):
    broken = tmp_path / "vd"
    shutil.copytree(vd_folder, broken)
    (broken / "vae" / "config.json").unlink()
    (broken / "text_encoder" / "model.safetensors").unlink()
    shutil.rmtree(broken / "tokenizer")
    assert set(missing_files(broken)) == {broken / "vae" / "config.json", broken / "text_encoder" /
                                          "model.safetensors", broken / "tokenizer" / "vocab.json"}
    with pytest.raises(FileNotFoundError, match=r"incomplete; missing: .*vae/config\.json.*text_encoder/model"
                                                r"\.safetensors.*tokenizer/vocab\.json"):
        load_versatile_diffusion(broken)


def test_absent_folder_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="BRAINDIFF_VD_DIR"):
        load_versatile_diffusion(tmp_path / "nowhere")


def test_folder_saved_with_dual_image_unet_needs_no_text_unet(vd_folder, vd, tmp_path):
    """diffusers' remove_unused_weights() layout: the image UNet holds both branches, no text_unet folder."""
    from braindiff_app.models._vd_compat import make_dual_unet

    dual = tmp_path / "dual"
    shutil.copytree(vd_folder, dual)
    fresh = load_versatile_diffusion(vd_folder)
    make_dual_unet(fresh.image_unet, fresh.text_unet).save_pretrained(dual / "image_unet")
    shutil.rmtree(dual / "text_unet")
    assert missing_files(dual) == []
    loaded = load_versatile_diffusion(dual)
    assert loaded.text_unet is None
    make_dual_unet(loaded.image_unet, None)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    context = torch.randn(1, 257 + 77, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.testing.assert_allclose(loaded.image_unet(x, 10, encoder_hidden_states=context).sample,
                                   fresh.image_unet(x, 10, encoder_hidden_states=context).sample, atol=1e-6)


def test_plain_image_unet_without_text_unet_is_refused(vd):
    from braindiff_app.demo.vd import build_components
    from braindiff_app.models._vd_compat import make_dual_unet

    plain = build_components(vd.tokenizer, "tiny").image_unet
    with pytest.raises(ValueError, match="text_unet: the image UNet has no dual cross-attention"):
        make_dual_unet(plain, None)


def test_loads_in_several_threads_run_one_at_a_time(monkeypatch, tmp_path):
    """diffusers' lazy imports failed when two app threads loaded at once; loads must not overlap."""
    import threading
    import time

    active, overlaps = [0], []

    def slow_load(folder, dtype):
        active[0] += 1
        overlaps.append(active[0])
        time.sleep(0.05)
        active[0] -= 1
        return folder

    monkeypatch.setattr("braindiff_app.models.versatile._load", slow_load)
    threads = [threading.Thread(target=load_versatile_diffusion, args=(tmp_path,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]


def test_text_attention_blocks_load_alone_and_guide_identically(vd_folder):
    """load_text_attention_blocks keeps only the text UNet's transformer blocks, at the same paths and values."""
    import numpy as np
    import torch
    from diffusers.models import Transformer2DModel

    from braindiff_app.models.img2img import DualGuidedImg2Img
    from braindiff_app.models.versatile import load_versatile_diffusion

    full = load_versatile_diffusion(vd_folder)
    trimmed = load_versatile_diffusion(vd_folder, text_unet="attention")
    blocks = {n: m for n, m in full.text_unet.named_modules() if isinstance(m, Transformer2DModel)}
    kept = {n: m for n, m in trimmed.text_unet.named_modules() if isinstance(m, Transformer2DModel)}
    assert blocks and set(kept) == set(blocks)
    n_full = sum(p.numel() for p in full.text_unet.parameters())
    n_kept = sum(p.numel() for p in trimmed.text_unet.parameters())
    assert n_kept == sum(p.numel() for m in blocks.values() for p in m.parameters()) < n_full
    for name, module in blocks.items():
        for (k, a), (_, b) in zip(module.state_dict().items(), kept[name].state_dict().items(), strict=True):
            assert torch.equal(a, b), (name, k)
    rng = np.random.default_rng(0)
    args = (rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8), rng.standard_normal((1, 257, 16), np.float32),
            rng.standard_normal((1, 77, 16), np.float32))
    outs = [DualGuidedImg2Img(c.vae, c.image_unet, c.text_unet, c.scheduler)(
        *args, guidance_scale=1.0, num_inference_steps=3, seeds=np.array([0])).images for c in (full, trimmed)]
    np.testing.assert_array_equal(outs[0], outs[1])


def test_clip_only_parts_load_no_unet(vd_folder):
    from braindiff_app.models.versatile import load_versatile_diffusion

    parts = load_versatile_diffusion(vd_folder, parts=("image_encoder", "text_encoder", "tokenizer"))
    assert parts.image_unet is None and parts.text_unet is None and parts.vae is None
    assert parts.image_encoder is not None and parts.tokenizer is not None

"""bench/unet_levers.py: growing cross-attention into the UNet's top up block starts from the same UNet."""

import torch

from tests._bench import load_bench


def _bench():
    return load_bench("unet_levers")


def _eps(c, latents, t, context):
    from braindiff_app.models._vd_compat import make_dual_unet, revert_dual_unet, set_dual_condition

    unet = make_dual_unet(c.image_unet, c.text_unet).eval()
    set_dual_condition(unet, 0.6, 5)
    with torch.no_grad():
        out = unet(latents, t, encoder_hidden_states=context).sample
    revert_dual_unet(unet)
    return out


def test_grown_unet_starts_as_the_original_and_its_new_attention_is_live():
    from diffusers.models import Transformer2DModel

    from braindiff_app.demo.vd import build_components, train_clip_tokenizer

    torch.manual_seed(0)
    c = build_components(train_clip_tokenizer(["a red ball", "a blue house", "a face"] * 4, 300), "tiny")
    grown = _bench().grow_attention16(c)

    def n_blocks(unet):
        return sum(isinstance(m, Transformer2DModel) for m in unet.modules())

    added = c.image_unet.config.layers_per_block + 1  # an up block has one more resnet than a down block
    assert n_blocks(grown.image_unet) == n_blocks(c.image_unet) + added
    assert n_blocks(grown.text_unet) == n_blocks(c.text_unet) + added
    latents, t, context = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 9, 16)
    before = _eps(c, latents, t, context)
    after = _eps(grown, latents, t, context)
    torch.testing.assert_close(after, before)
    new = grown.image_unet.up_blocks[0].attentions[0].proj_out
    with torch.no_grad():
        new.weight.normal_()
    assert (_eps(grown, latents, t, context) - before).abs().max() > 1e-3

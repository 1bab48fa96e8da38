"""Workarounds for diffusers 0.42.1's Versatile Diffusion code, all in one place.

Three faults are met here and nowhere else:

1. ``DualTransformer2DModel.forward`` does not accept the ``encoder_attention_mask`` keyword that every
   ``UNet2DConditionModel`` block passes (upstream issue 13651), so any dual-guided call fails. We replace the
   dual blocks with :class:`DualCrossAttention`, which accepts and ignores the keywords it does not use, and whose
   mixing weight is named for what it weighs (``vision_weight``; diffusers' ``mix_ratio`` /
   ``text_to_image_strength`` weighs the *text* branch: 0.6 vision is ``mix_ratio=0.4``).
2. The text UNet class (``UNetFlatConditionModel``) is not exported from ``diffusers``, so a folder naming it does
   not load through ``DiffusionPipeline``. :func:`text_unet_class` imports it from its module.
3. A dual-guided pipeline saved with ``remove_unused_weights()`` keeps the text branch inside the image UNet
   (``dual_cross_attention=True``) and has no ``text_unet`` folder. :func:`make_dual_unet` accepts both layouts.
"""

from __future__ import annotations

from torch import nn

__all__ = ["DualCrossAttention", "TextAttentionBlocks", "dual_blocks", "make_dual_unet", "revert_dual_unet",
           "set_dual_condition", "text_unet_class"]


def text_unet_class() -> type:
    """The Versatile Diffusion text UNet class (``UNetFlatConditionModel``), which diffusers does not export."""
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel

    return UNetFlatConditionModel


class DualCrossAttention(nn.Module):
    """A vision and a text transformer block run on the same input; their residuals are mixed.

    ``out = x + vision_weight * (vision_block(x, vision) - x) + (1 - vision_weight) * (text_block(x, text) - x)``.
    A branch whose weight is 0 is not computed (so weight 1.0 is exactly vision-only guidance).

    Parameters
    ----------
    vision_block, text_block : diffusers Transformer2DModel
        The image UNet's and the text UNet's block at the same place in the network.

    Attributes
    ----------
    vision_weight : float
        Weight of the vision branch, in [0, 1]; set per call by :func:`set_dual_condition`.
    n_vision_tokens : int
        The first ``n_vision_tokens`` tokens of ``encoder_hidden_states`` condition the vision branch, the rest
        the text branch.
    """

    def __init__(self, vision_block: nn.Module, text_block: nn.Module) -> None:
        super().__init__()
        self.transformers = nn.ModuleList([vision_block, text_block])
        self.vision_weight = 0.6
        self.n_vision_tokens = 257

    def forward(self, hidden_states, encoder_hidden_states, timestep=None, cross_attention_kwargs=None,
                return_dict: bool = False, **_unused):
        contexts = (encoder_hidden_states[:, : self.n_vision_tokens], encoder_hidden_states[:, self.n_vision_tokens:])
        weights = (self.vision_weight, 1.0 - self.vision_weight)
        out = hidden_states
        for block, context, weight in zip(self.transformers, contexts, weights, strict=True):
            if weight == 0:
                continue
            encoded = block(hidden_states, encoder_hidden_states=context, timestep=timestep,
                            cross_attention_kwargs=cross_attention_kwargs, return_dict=False)[0]
            out = out + weight * (encoded - hidden_states)
        return (out,)


def dual_blocks(unet: nn.Module) -> list[DualCrossAttention]:
    """The :class:`DualCrossAttention` blocks of a converted image UNet (empty if not converted)."""
    return [m for m in unet.modules() if isinstance(m, DualCrossAttention)]


def _replace(unet: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, index = name.rsplit(".", 1)
    unet.get_submodule(parent_name)[int(index)] = new


def make_dual_unet(image_unet: nn.Module, text_unet: nn.Module | None) -> nn.Module:
    """Give the image UNet dual cross-attention, in place (idempotent).

    Parameters
    ----------
    image_unet : diffusers UNet2DConditionModel
        Plain (Versatile Diffusion's universal layout), already dual (saved after ``remove_unused_weights``), or
        already converted by this function.
    text_unet : UNetFlatConditionModel or None
        Its transformer blocks become the text branch. Not needed when ``image_unet`` already holds both branches.

    Returns
    -------
    The same ``image_unet``, whose transformer blocks are now :class:`DualCrossAttention` modules sharing the
    weights of both UNets.
    """
    from diffusers.models import DualTransformer2DModel, Transformer2DModel

    if dual_blocks(image_unet):
        return image_unet
    saved_dual = [(n, m) for n, m in image_unet.named_modules() if isinstance(m, DualTransformer2DModel)]
    if saved_dual:
        # diffusers' order: transformers[0] = image block, transformers[1] = text block.
        for name, module in saved_dual:
            _replace(image_unet, name, DualCrossAttention(module.transformers[0], module.transformers[1]))
        return image_unet
    if text_unet is None:
        raise ValueError(
            "text_unet: the image UNet has no dual cross-attention of its own, so a text UNet is needed; got None. "
            "Pass the Versatile Diffusion folder's text_unet."
        )
    plain = [(n, m) for n, m in image_unet.named_modules() if isinstance(m, Transformer2DModel)]
    text_blocks = dict(text_unet.named_modules())
    for name, module in plain:
        text_block = text_blocks.get(name)
        if not isinstance(text_block, Transformer2DModel) or text_block.config.in_channels != module.config.in_channels:
            raise ValueError(
                f"text_unet: expected a transformer block {name!r} with {module.config.in_channels} channels matching "
                f"the image UNet's, got {type(text_block).__name__}. The two UNets must come from the same model."
            )
        _replace(image_unet, name, DualCrossAttention(module, text_block))
    image_unet.register_to_config(dual_cross_attention=True)
    return image_unet


def revert_dual_unet(image_unet: nn.Module) -> nn.Module:
    """Undo :func:`make_dual_unet` in place: every dual block gives back its vision (image UNet) block.

    The text blocks stay in the text UNet they came from, so both UNets save in Versatile Diffusion's layout.
    """
    for name, module in list(image_unet.named_modules()):
        if isinstance(module, DualCrossAttention):
            _replace(image_unet, name, module.transformers[0])
    image_unet.register_to_config(dual_cross_attention=False)
    return image_unet


def set_dual_condition(unet: nn.Module, vision_weight: float, n_vision_tokens: int) -> None:
    """Set the mixing weight and the vision/text token split on every dual block of ``unet``."""
    for block in dual_blocks(unet):
        block.vision_weight = float(vision_weight)
        block.n_vision_tokens = int(n_vision_tokens)


class TextAttentionBlocks(nn.Module):
    """The transformer blocks of a text UNet, at the text UNet's module paths (``down_blocks.0.attentions.0``, ...).

    What dual guidance takes from the text UNet (:func:`~braindiff_app.models._vd_compat.make_dual_unet` looks
    the blocks up by name). ``config`` is the text UNet's.
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

    def add_block(self, name: str, block) -> None:
        parent = self
        for part in name.split(".")[:-1]:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(name.split(".")[-1], block)

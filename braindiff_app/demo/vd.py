"""Small Versatile Diffusion components of the real classes: the demo tier's models and the tests' tiny ones.

Same classes as the real checkpoint (CLIPVisionModelWithProjection, CLIPTextModelWithProjection, CLIPTokenizer,
AutoencoderKL, UNet2DConditionModel, UNetFlatConditionModel, DDIMScheduler) at small sizes. The CLIP encoders keep
Versatile Diffusion's token counts: a 32 px input with patch 2 gives 1 + 16 x 16 = 257 vision tokens, and the
text encoder has 77 positions. The tokenizer is a byte-level BPE trained on the demo captions and saved in CLIP's
vocabulary layout (byte symbols, the same with ``</w>``, merges, ``<|startoftext|>``, ``<|endoftext|>``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from braindiff_app.models._vd_compat import text_unet_class
from braindiff_app.models.versatile import VersatileComponents

__all__ = ["SIZES", "build_components", "train_clip_tokenizer"]

# CLIP's pre-tokenisation: contractions, letter runs, single digits, punctuation runs.
_CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

# Sizes by name. "demo": the committed demo models: 64 px images, an AutoKL of factor 4 (not VD's 8: at 64 px an
# 8x8x4 latent cannot hold a standing figure or a word, a 16x16x4 one can), cross-attention at the UNet's 8x8 level
# only (at 16x16 it doubles the training time); sized to train in about 65 minutes on 2 CPU cores.
# "tiny": tests (16 px images, 8x8x4 latents, cross-attention at the top level as in VD).
SIZES: dict[str, dict] = {
    "demo": dict(clip_dim=64, clip_width=48, clip_layers=2, clip_heads=4, vae_channels=(32, 64, 64),
                 unet_channels=(32, 64), unet_down_blocks=("DownBlock2D", "CrossAttnDownBlock2D"),
                 unet_heads_dim=8, groups=8, image_size=64, unet_layers=1),
    "tiny": dict(clip_dim=16, clip_width=16, clip_layers=1, clip_heads=2, vae_channels=(8, 8),
                 unet_channels=(16, 16), unet_down_blocks=("CrossAttnDownBlock2D", "DownBlock2D"),
                 unet_heads_dim=8, groups=4, image_size=16, unet_layers=1),
}


def train_clip_tokenizer(captions: list[str], vocab_size: int = 1000):
    """Train a byte-level BPE on captions and return it as a CLIP tokenizer (77 positions).

    Parameters
    ----------
    captions : list of str
        Training text (the demo captions).
    vocab_size : int, default 1000
        Target vocabulary size, including the 512 byte symbols and the 2 special tokens.

    Returns
    -------
    transformers.CLIPTokenizer
        ``bos`` = ``<|startoftext|>``, ``eos`` = ``pad`` = ``<|endoftext|>``, ``model_max_length`` = 77.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
        ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=ByteLevel.alphabet(),
                                  end_of_word_suffix="</w>", min_frequency=2, show_progress=False)
    bpe.train_from_iterator(captions, trainer)
    merges = [m if isinstance(m, list) else m.split(" ") for m in json.loads(bpe.to_str())["model"]["merges"]]
    symbols = sorted(ByteLevel.alphabet())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab = list(dict.fromkeys(vocab)) + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))
        tokenizer = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"))
    tokenizer.model_max_length = 77
    return tokenizer


def scheduler_config() -> dict:
    """Versatile Diffusion's DDIM schedule (scaled-linear betas 0.00085-0.012 over 1000 steps, offset 1)."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def build_components(tokenizer, size: str = "demo", seed: int = 0, latent_channels: int = 4) -> VersatileComponents:
    """Randomly initialised Versatile Diffusion components of the real classes at a small size.

    Parameters
    ----------
    tokenizer : transformers.CLIPTokenizer
        Sets the text encoder's vocabulary and special tokens (see :func:`train_clip_tokenizer`).
    size : str in {"demo", "tiny"}, default "demo"
        ``"demo"``: 64 px images, 16x16x4 latents, clip_dim 64. ``"tiny"``: 16 px images, clip_dim 16 (tests).
    seed : int, default 0
        Seeds the weight initialisation.
    latent_channels : int, default 4
        Channels of the AutoKL's latent (Versatile Diffusion's 4; ``bench/autokl_levers.py`` measured a 16x16x8
        latent's round trip closer to the seen images), and so of the image UNet's input and output.

    Returns
    -------
    VersatileComponents
        Plain image UNet (not yet dual) and a text UNet with matching transformer blocks, in train mode.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from braindiff_app.config import check_in_allowed

    check_in_allowed(size, SIZES, "size")
    if latent_channels not in (4, 8):
        raise ValueError(f"latent_channels: expected 4 (Versatile Diffusion's) or 8, got {latent_channels}.")
    s = SIZES[size]
    torch.manual_seed(seed)
    clip = dict(hidden_size=s["clip_width"], intermediate_size=2 * s["clip_width"], num_hidden_layers=s["clip_layers"],
                num_attention_heads=s["clip_heads"], projection_dim=s["clip_dim"])
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(image_size=32, patch_size=2, **clip))
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **clip))
    n_vae = len(s["vae_channels"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n_vae,
                        up_block_types=("UpDecoderBlock2D",) * n_vae, block_out_channels=s["vae_channels"],
                        latent_channels=latent_channels, layers_per_block=1, norm_num_groups=s["groups"],
                        sample_size=s["image_size"])
    unet = dict(sample_size=s["image_size"] // 2 ** (n_vae - 1), in_channels=latent_channels,
                out_channels=latent_channels,
                block_out_channels=s["unet_channels"], layers_per_block=s["unet_layers"],
                cross_attention_dim=s["clip_dim"], attention_head_dim=s["unet_heads_dim"],
                norm_num_groups=s["groups"])
    down = s["unet_down_blocks"]
    up = tuple(block.replace("Down", "Up") for block in reversed(down))
    image_unet = UNet2DConditionModel(down_block_types=down, up_block_types=up, **unet)
    text_unet = text_unet_class()(down_block_types=tuple(b.replace("2D", "Flat") for b in down),
                                  up_block_types=tuple(b.replace("2D", "Flat") for b in up), **unet)
    return VersatileComponents(vae=vae, image_unet=image_unet, text_unet=text_unet, image_encoder=image_encoder,
                               text_encoder=text_encoder, tokenizer=tokenizer,
                               scheduler=DDIMScheduler(**scheduler_config()))

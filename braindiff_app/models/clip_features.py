"""CLIP token features that condition Versatile Diffusion: the regression targets of Brain-Diffuser.

Exactly as the paper's reference code computes them:

- vision, shape (n_images, 257, clip_dim): the vision transformer's last hidden state on all tokens, through the
  post layernorm and the visual projection, divided by the norm of token 0 (the class token), so token 0 has unit
  norm;
- text, shape (n_images, 77, clip_dim): the text transformer's last hidden state on all tokens through the text
  projection, divided by the norm of the pooled (end-of-text token) projected output; averaged over the captions
  of each image.

These values depend on the transformers version (CLIP-vision features changed between 4.19 and 4.33): record
``transformers.__version__`` beside them (``braindiff extract clip`` does, in ``clip.json``).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIP_RESIZES",
    "UNCOND_IMAGES",
    "clip_pixel_values",
    "reference_pixel_values",
    "clip_text_features",
    "clip_vision_features",
    "unconditional_features",
]

# OpenAI CLIP's pixel normalisation (the image_feature_extractor of Versatile Diffusion uses these).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: How images become CLIP input (``clip_vision_features(resize=...)``).
CLIP_RESIZES = ("torch-bicubic", "pil-bilinear-512")
#: The unconditional image (``unconditional_features(image=...)``).
UNCOND_IMAGES = ("grey", "zero-uint8")
#: The reference's stimulus side before CLIP's processor (its Versatile Diffusion input size).
REFERENCE_SIDE = 512


def _check_images(images) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images: expected a numpy array of shape (n_images, height, width, 3), got {type(images)}.")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images: expected shape (n_images, height, width, 3), got {images.shape}.")
    if images.dtype != np.uint8:
        raise ValueError(f"images: expected dtype uint8 (0-255), got {images.dtype}. Convert with .astype(np.uint8).")
    return images


def clip_pixel_values(images01: torch.Tensor, size: int) -> torch.Tensor:
    """CLIP input (n, 3, size, size) from images in [0, 1] (n, 3, height, width): center square, bicubic, normalised."""
    height, width = images01.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = images01[..., top:top + side, left:left + side]
    resized = torch.nn.functional.interpolate(square, size=(size, size), mode="bicubic", antialias=True,
                                              align_corners=False)
    mean = torch.tensor(CLIP_MEAN, dtype=resized.dtype, device=resized.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=resized.dtype, device=resized.device).view(1, 3, 1, 1)
    return (resized - mean) / std


def reference_pixel_values(images: np.ndarray, size: int) -> torch.Tensor:
    """CLIP input (n, 3, size, size) as the reference makes it from uint8 stimuli (n, height, width, 3).

    PIL bilinear to 512 x 512 (``scripts/clipvision_extract_features.py`` line 46: torchvision 0.13's ``resize``
    of a PIL image, bilinear by default; docs/reproduce.md, item 5); ``to_tensor`` (/255) and ``* 2 - 1``
    (Versatile Diffusion's pixel space); its CLIP wrapper's ``(x + 1) / 2``; the processor's float -> uint8
    conversion (``(x * 255).astype(uint8)``, truncating); PIL bicubic to ``size`` (shortest edge; square stimuli
    need no crop); /255; CLIP's mean/std normalisation.
    """
    from PIL import Image

    out = np.empty((len(images), size, size, 3), np.float32)
    for i, image in enumerate(images):
        big = np.asarray(Image.fromarray(np.asarray(image)).resize((REFERENCE_SIDE, REFERENCE_SIDE),
                                                                 Image.BILINEAR))
        vd = big.astype(np.float32) / np.float32(255) * np.float32(2) - np.float32(1)
        u8 = ((vd + np.float32(1)) / np.float32(2) * np.float32(255)).astype(np.uint8)
        side = min(u8.shape[:2])
        top, left = (u8.shape[0] - side) // 2, (u8.shape[1] - side) // 2
        square = Image.fromarray(u8[top:top + side, left:left + side])
        out[i] = np.asarray(square.resize((size, size), Image.BICUBIC), np.float32) / np.float32(255)
    mean, std = np.asarray(CLIP_MEAN, np.float32), np.asarray(CLIP_STD, np.float32)
    return torch.from_numpy((out - mean) / std).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def _vision_tokens(image_encoder, images01: torch.Tensor | None, pixels: torch.Tensor | None = None) -> torch.Tensor:
    """(n, 3, h, w) float in [0, 1] (or CLIP input ``pixels``) -> normalised tokens (n, n_tokens, clip_dim) float32
    on the CPU."""
    param = next(image_encoder.parameters())
    if pixels is None:
        pixels = clip_pixel_values(images01.to(param.device, torch.float32), image_encoder.config.image_size)
    pixels = pixels.to(param.device)
    hidden = image_encoder.vision_model(pixel_values=pixels.to(param.dtype)).last_hidden_state
    tokens = image_encoder.visual_projection(image_encoder.vision_model.post_layernorm(hidden)).float()
    return (tokens / tokens[:, :1].norm(dim=-1, keepdim=True)).cpu()


def clip_vision_features(image_encoder, images: np.ndarray, batch_size: int = 16,
                         progress: bool = False, resize: str = "torch-bicubic") -> np.ndarray:
    """CLIP-vision token features of images, normalised by the class token's norm.

    Parameters
    ----------
    image_encoder : transformers.CLIPVisionModelWithProjection
        On its device; inputs are moved there.
    images : ndarray of shape (n_images, height, width, 3), uint8
        Any size: the center square is resized (bicubic, antialiased) to the encoder's input size.
    batch_size : int, default 16
        Images per forward pass.
    progress : bool, default False
        Show a progress bar.
    resize : str in {"torch-bicubic", "pil-bilinear-512"}, default "torch-bicubic"
        - "torch-bicubic": one antialiased torch bicubic resize to the encoder's size;
        - "pil-bilinear-512": the reference's way (:func:`reference_pixel_values`).

    Returns
    -------
    ndarray of shape (n_images, n_tokens, clip_dim), float32
        n_tokens is 257 for ViT-L/14 at 224 px (and for the demo encoder); token 0 has unit norm.
    """
    from braindiff_app.config import check_in_allowed

    images = _check_images(images)
    check_in_allowed(resize, CLIP_RESIZES, "resize")
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="CLIP vision", disable=not progress):
        if resize == "pil-bilinear-512":
            pixels = reference_pixel_values(images[start:start + batch_size], image_encoder.config.image_size)
            out.append(_vision_tokens(image_encoder, None, pixels).numpy())
            continue
        batch = torch.tensor(images[start:start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
        out.append(_vision_tokens(image_encoder, batch).numpy())
    dim = image_encoder.config.projection_dim
    return np.concatenate(out) if out else np.zeros((0, 0, dim), np.float32)


@torch.no_grad()
def _text_tokens(text_encoder, tokenizer, texts: list[str]) -> torch.Tensor:
    """Captions -> normalised tokens (n_texts, 77, clip_dim) float32 on the CPU (no attention mask, as VD)."""
    device = next(text_encoder.parameters()).device
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    output = text_encoder(input_ids=ids)
    tokens = text_encoder.text_projection(output.last_hidden_state).float()
    return (tokens / output.text_embeds.float().norm(dim=-1, keepdim=True)[:, None]).cpu()


def clip_text_features(text_encoder, tokenizer, captions: list[list[str]], batch_size: int = 16,
                       progress: bool = False) -> np.ndarray:
    """CLIP-text token features of each image's captions, normalised by the pooled output's norm and averaged.

    Parameters
    ----------
    text_encoder : transformers.CLIPTextModelWithProjection
        On its device; token ids are moved there.
    tokenizer : transformers.CLIPTokenizer
        Pads and truncates every caption to ``tokenizer.model_max_length`` (77) tokens.
    captions : list of list of str
        One list per image (NSD: 5 COCO captions); each list must hold at least one caption.
    batch_size : int, default 16
        Captions per forward pass.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    ndarray of shape (n_images, 77, clip_dim), float32
        The mean over each image's captions of the normalised token features.
    """
    if not isinstance(captions, list | tuple) or not all(isinstance(c, list | tuple) for c in captions):
        raise TypeError("captions: expected a list with one list of caption strings per image, got "
                        f"{type(captions).__name__}. Wrap single captions: [[caption] for caption in captions].")
    for i, image_captions in enumerate(captions):
        if len(image_captions) == 0 or not all(isinstance(c, str) for c in image_captions):
            raise ValueError(f"captions[{i}]: expected a non-empty list of str, got {image_captions!r}.")
    flat = [c for image_captions in captions for c in image_captions]
    owner = torch.tensor([i for i, image_captions in enumerate(captions) for _ in image_captions])
    dim = text_encoder.config.projection_dim
    sums = torch.zeros(len(captions), tokenizer.model_max_length, dim)
    for start in tqdm(range(0, len(flat), batch_size), desc="CLIP text", disable=not progress):
        sums.index_add_(0, owner[start:start + batch_size], _text_tokens(text_encoder, tokenizer,
                                                                         flat[start:start + batch_size]))
    counts = torch.tensor([len(c) for c in captions], dtype=torch.float32).view(-1, 1, 1)
    return (sums / counts.clamp(min=1)).numpy()


def unconditional_features(image_encoder, text_encoder, tokenizer,
                           image: str = "grey") -> tuple[np.ndarray, np.ndarray]:
    """Features of the null conditions used by classifier-free guidance.

    The reference encodes an all-zero image in its [-1, 1] pixel space and the empty caption.

    Parameters
    ----------
    image_encoder, text_encoder, tokenizer
        CLIP parts of Versatile Diffusion.
    image : str in {"grey", "zero-uint8"}, default "grey"
        - "grey": a uniform 0.5 in [0, 1] (what diffusers' dual-guided pipeline feeds);
        - "zero-uint8": the reference's all-zero image after its CLIP processor's float -> uint8 truncation,
          127/255.

    Returns
    -------
    vision_uncond : ndarray of shape (1, n_tokens, clip_dim), float32
    text_uncond : ndarray of shape (1, 77, clip_dim), float32
    """
    size = image_encoder.config.image_size
    from braindiff_app.config import check_in_allowed

    check_in_allowed(image, UNCOND_IMAGES, "image")
    grey = torch.full((1, 3, size, size), 0.5 if image == "grey" else 127 / 255)
    vision = _vision_tokens(image_encoder, grey).numpy()
    text = _text_tokens(text_encoder, tokenizer, [""]).numpy()
    return vision, text

"""Load a Versatile Diffusion folder (diffusers layout) into its components, offline.

The folder holds one subfolder per component::

    image_unet/     config.json + diffusion_pytorch_model.safetensors   (UNet2DConditionModel)
    text_unet/      config.json + diffusion_pytorch_model.safetensors   (UNetFlatConditionModel)
    vae/            config.json + diffusion_pytorch_model.safetensors   (AutoencoderKL)
    image_encoder/  config.json + model.safetensors                     (CLIPVisionModelWithProjection)
    text_encoder/   config.json + model.safetensors                     (CLIPTextModelWithProjection)
    tokenizer/      vocab.json + merges.txt                             (CLIPTokenizer)
    scheduler/      scheduler_config.json                               (a diffusers scheduler, DDIM in VD)

``.bin`` weights and ``.fp16`` variants are accepted too. A folder saved by diffusers' dual-guided pipeline after
``remove_unused_weights()`` (image UNet with dual cross-attention, no ``text_unet/``) loads as well.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["VersatileComponents", "expected_files", "load_text_attention_blocks", "load_versatile_diffusion",
           "missing_files",
           "save_versatile_diffusion"]

_UNET_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                 "diffusion_pytorch_model.bin")
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin")

# diffusers' lazy imports and transformers' from_pretrained (which patches torch's init functions while it loads)
# are not thread-safe: two threads loading at once failed with "cannot import name 'AutoencoderKL'". One load at a
# time per process (the app loads in its event threads).
_LOAD_LOCK = threading.Lock()

# component -> (files that must all exist, alternatives of which one must exist)
_REQUIRED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "image_unet": (("config.json",), _UNET_WEIGHTS),
    "text_unet": (("config.json",), _UNET_WEIGHTS),
    "vae": (("config.json",), _UNET_WEIGHTS),
    "image_encoder": (("config.json",), _TRANSFORMERS_WEIGHTS),
    "text_encoder": (("config.json",), _TRANSFORMERS_WEIGHTS),
    "tokenizer": ((), ("vocab.json", "tokenizer.json")),
    "scheduler": (("scheduler_config.json",), ()),
}
COMPONENTS = tuple(_REQUIRED)


@dataclass(frozen=True)
class VersatileComponents:
    """The Versatile Diffusion components Brain-Diffuser uses, in eval mode with gradients off.

    Attributes
    ----------
    vae : diffusers.AutoencoderKL
    image_unet : diffusers.UNet2DConditionModel
    text_unet : UNetFlatConditionModel or None
        None when the image UNet already holds the text branch (a folder saved after ``remove_unused_weights``).
    image_encoder : transformers.CLIPVisionModelWithProjection
    text_encoder : transformers.CLIPTextModelWithProjection
    tokenizer : transformers.CLIPTokenizer
    scheduler : diffusers scheduler (DDIMScheduler in Versatile Diffusion)
    """

    vae: Any
    image_unet: Any
    text_unet: Any
    image_encoder: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any


def _image_unet_is_dual(folder: Path) -> bool:
    config = folder / "image_unet" / "config.json"
    return config.exists() and bool(json.loads(config.read_text()).get("dual_cross_attention", False))


def expected_files(folder: str | Path) -> list[Path]:
    """The files a Versatile Diffusion folder needs (looks at files only; imports no model code).

    Parameters
    ----------
    folder : str or Path
        The folder in diffusers layout.

    Returns
    -------
    list of Path
        Where a file has several accepted names (``.safetensors``, ``.fp16.safetensors``, ``.bin``), the one
        present, else the first (``.safetensors``). No ``text_unet`` files when the image UNet is already dual.
    """
    folder = Path(folder)
    files: list[Path] = []
    for component, (required, alternatives) in _REQUIRED.items():
        if component == "text_unet" and _image_unet_is_dual(folder):
            continue
        sub = folder / component
        files += [sub / name for name in required]
        if alternatives:
            files.append(next((sub / n for n in alternatives if (sub / n).exists()), sub / alternatives[0]))
    return files


def missing_files(folder: str | Path) -> list[Path]:
    """The files of :func:`expected_files` that are absent (empty list when the folder is complete)."""
    return [path for path in expected_files(folder) if not path.exists()]


def _variant(sub: Path, names: tuple[str, ...]) -> str | None:
    plain = [n for n in names if ".fp16." not in n]
    return "fp16" if not any((sub / n).exists() for n in plain) else None


def _scheduler(sub: Path):
    import diffusers

    name = json.loads((sub / "scheduler_config.json").read_text()).get("_class_name", "DDIMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "set_timesteps"):
        raise ValueError(f"{sub / 'scheduler_config.json'}: expected a diffusers scheduler class, got {name!r}.")
    return cls.from_pretrained(sub, local_files_only=True)


def _text_unet(sub: Path, dtype):
    import diffusers

    from braindiff_app.models._vd_compat import text_unet_class

    name = json.loads((sub / "config.json").read_text()).get("_class_name", "UNetFlatConditionModel")
    cls = text_unet_class() if name == "UNetFlatConditionModel" else getattr(diffusers, name)
    return cls.from_pretrained(sub, torch_dtype=dtype, local_files_only=True, variant=_variant(sub, _UNET_WEIGHTS))


def load_versatile_diffusion(folder: str | Path, dtype=None, parts=None,
                             text_unet: str = "full") -> VersatileComponents:
    """Load every component of a local Versatile Diffusion folder (no network: ``local_files_only=True``).

    Thread-safe: loads in several threads of one process run one after the other.

    Parameters
    ----------
    folder : str or Path
        A folder in diffusers layout (see the module docstring), e.g. ``BRAINDIFF_VD_DIR`` or
        ``assets/demo/models/vd``.
    dtype : torch.dtype or None, default None
        Dtype of the loaded weights; None loads float32. Components stay on the CPU: move them with ``.to()``.
    parts : sequence of str or None, default None
        Components to load (names of :class:`VersatileComponents`); the others are None. None loads all.
        ``("image_encoder", "text_encoder", "tokenizer")`` is what CLIP feature extraction needs (the UNets, 10 GB
        in float32 on the real tier, are then never read).
    text_unet : str in {"full", "attention"}, default "full"
        - "full": the whole text UNet (1.71 B parameters in Versatile Diffusion);
        - "attention": only its transformer blocks (267 M), the only part dual guidance uses
          (:func:`load_text_attention_blocks`); the rest of the checkpoint is never read into memory.

    Returns
    -------
    VersatileComponents

    Raises
    ------
    FileNotFoundError
        Naming each missing file, when the folder is incomplete.
    """
    if text_unet not in ("full", "attention"):
        raise ValueError(f"text_unet: expected 'full' or 'attention', got {text_unet!r}.")
    if text_unet == "attention":
        parts = COMPONENTS if parts is None else parts
        parts = tuple(parts) + ("text_unet:attention",) if "text_unet" in parts else tuple(parts)
    if parts is not None:
        parts = tuple(parts)
        unknown = [p for p in parts if p not in COMPONENTS and p != "text_unet:attention"]
        if unknown:
            raise ValueError(f"parts: unknown component(s) {unknown}; expected some of {list(COMPONENTS)}.")
    with _LOAD_LOCK:
        return _load(Path(folder), dtype) if parts is None else _load(Path(folder), dtype, parts)


def _load(folder: Path, dtype, parts=None) -> VersatileComponents:
    """:func:`load_versatile_diffusion`'s work, run under ``_LOAD_LOCK``."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

    dtype = dtype or torch.float32  # transformers 5 would otherwise keep the saved dtype (fp16 for the demo)
    if not folder.is_dir():
        raise FileNotFoundError(f"Versatile Diffusion folder {folder}: not found. Set BRAINDIFF_VD_DIR or --vd-dir to "
                                "a folder in diffusers layout (image_unet, text_unet, vae, image_encoder, ...).")
    missing = [p for p in missing_files(folder) if parts is None or p.relative_to(folder).parts[0] in parts]
    if missing:
        raise FileNotFoundError(
            f"Versatile Diffusion folder {folder} is incomplete; missing: " + ", ".join(map(str, missing))
            + ". Copy these files from a Versatile Diffusion checkpoint in diffusers layout."
        )

    def unet_like(cls, name):
        sub = folder / name
        return cls.from_pretrained(sub, torch_dtype=dtype, local_files_only=True, variant=_variant(sub, _UNET_WEIGHTS))

    def clip_like(cls, name):
        sub = folder / name
        return cls.from_pretrained(sub, dtype=dtype, local_files_only=True,
                                   variant=_variant(sub, _TRANSFORMERS_WEIGHTS))

    loaders = {
        "vae": lambda: unet_like(AutoencoderKL, "vae"),
        "image_unet": lambda: unet_like(UNet2DConditionModel, "image_unet"),
        "text_unet": lambda: None if _image_unet_is_dual(folder) else (
            load_text_attention_blocks(folder / "text_unet", dtype)
            if parts is not None and "text_unet:attention" in parts else _text_unet(folder / "text_unet", dtype)),
        "image_encoder": lambda: clip_like(CLIPVisionModelWithProjection, "image_encoder"),
        "text_encoder": lambda: clip_like(CLIPTextModelWithProjection, "text_encoder"),
        "tokenizer": lambda: CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
        "scheduler": lambda: _scheduler(folder / "scheduler"),
    }
    components = VersatileComponents(**{name: load() if parts is None or name in parts else None
                                        for name, load in loaders.items()})
    for name in ("vae", "image_unet", "text_unet", "image_encoder", "text_encoder"):
        module = getattr(components, name)
        if module is not None:
            module.eval().requires_grad_(False)
    return components


def load_text_attention_blocks(sub: str | Path, dtype=None):
    """Load only the transformer blocks of a Versatile Diffusion text UNet folder (config + weights).

    The model is built without memory (``accelerate.init_empty_weights``); only the blocks' tensors are read
    (safetensors: by key; ``.bin``: memory-mapped), cast to ``dtype`` (None: float32) and assigned.

    Returns
    -------
    braindiff_app.models._vd_compat.TextAttentionBlocks
        In eval mode, gradients off, on the CPU.
    """
    import torch
    from accelerate import init_empty_weights
    from diffusers.models import Transformer2DModel

    from braindiff_app.models._vd_compat import TextAttentionBlocks, text_unet_class

    sub = Path(sub)
    dtype = dtype or torch.float32
    name = json.loads((sub / "config.json").read_text()).get("_class_name", "UNetFlatConditionModel")
    import diffusers

    cls = text_unet_class() if name == "UNetFlatConditionModel" else getattr(diffusers, name)
    with init_empty_weights():
        full = cls.from_config(cls.load_config(sub))
    blocks = [(n, m) for n, m in full.named_modules() if isinstance(m, Transformer2DModel)]
    prefixes = tuple(n + "." for n, _ in blocks)
    weights = next((sub / n for n in _UNET_WEIGHTS if (sub / n).exists()), None)
    if weights is None:
        raise FileNotFoundError(f"{sub}: no text UNet weights ({', '.join(_UNET_WEIGHTS)}).")
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            state = {k: fh.get_tensor(k).to(dtype) for k in fh.keys() if k.startswith(prefixes)}
    else:
        full_state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
        state = {k: v.to(dtype) for k, v in full_state.items() if k.startswith(prefixes)}
        del full_state
    out = TextAttentionBlocks(full.config)
    for n, block in blocks:
        own = {k[len(n) + 1:]: v for k, v in state.items() if k.startswith(n + ".")}
        try:
            block.load_state_dict(own, strict=True, assign=True)
        except RuntimeError as exc:
            raise ValueError(f"{weights}: the weights of text UNet block {n!r} do not match its config ({exc}).") \
                from None
        out.add_block(n, block)
    return out.eval().requires_grad_(False)


def save_versatile_diffusion(components: VersatileComponents, folder: str | Path, dtype=None) -> None:
    """Write components as a Versatile Diffusion folder that :func:`load_versatile_diffusion` reads back.

    Parameters
    ----------
    components : VersatileComponents
        With a plain (not yet dual) image UNet and a text UNet, as in Versatile Diffusion's own folder.
    folder : str or Path
        Destination; written to a temporary folder beside it and renamed when complete
        (:func:`braindiff_app.atomic.atomic_folder`).
    dtype : torch.dtype or None, default None
        Cast the weights before saving (e.g. ``torch.float16`` to halve the size); None keeps them.
    """
    import copy

    from braindiff_app.atomic import atomic_folder

    with atomic_folder(folder) as tmp:
        for name in ("vae", "image_unet", "text_unet", "image_encoder", "text_encoder"):
            module = getattr(components, name)
            if module is None:
                continue
            module = copy.deepcopy(module).to(dtype) if dtype is not None else module
            module.save_pretrained(tmp / name, safe_serialization=True)
        components.tokenizer.save_pretrained(tmp / "tokenizer")
        components.scheduler.save_pretrained(tmp / "scheduler")

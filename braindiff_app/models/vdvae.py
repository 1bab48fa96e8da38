"""Stage 1: the VDVAE (very deep hierarchical VAE), its latents and its decoding.

:class:`VDVAE` keeps openai/vdvae's module names, so the official ImageNet-64 EMA checkpoint
(``imagenet64-iter-1600000-model-ema.th``) loads into ``VDVAE(VDVAEConfig.imagenet64())`` with strict keys.
Brain-Diffuser regresses fMRI onto the latents of the first 31 decoder layers (91168 values) and decodes
predicted latents, drawing the remaining 44 layers from the prior.

Randomness goes through one generator per image, seeded from the caller's seeds, so an image's latents or
reconstruction do not depend on which other images share its batch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from braindiff_app.config import check_in_allowed
from braindiff_app.images import resize_images
from braindiff_app.models._vdvae_blocks import DecBlock, Decoder, Encoder, gaussian_kl, parse_layer_string

__all__ = [
    "VDVAEConfig",
    "VDVAE",
    "load_vdvae",
    "load_demo_vdvae",
    "save_vdvae",
    "extract_latents",
    "decode_latents",
    "split_latents",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LATENT_MODES = ("mean", "sample")
PIXEL_MODES = ("mode", "sample")
QUANTISE_MODES = ("round", "truncate")
UNIFORM_MODES = ("clamp", "rescale")
INPUT_RESIZES = ("torch-bilinear", "bilinear")


@dataclass(frozen=True)
class VDVAEConfig:
    """Hyper-parameters of a :class:`VDVAE` (names as in openai/vdvae's ``hps.py``).

    Attributes
    ----------
    name : str
        Identity written into feature metadata.
    image_size : int
        Input and output resolution (pixels); the largest decoder resolution.
    width : int
        Channels of every encoder and decoder state.
    zdim : int
        Channels of each latent layer.
    bottleneck_multiple : float
        Bottleneck channels = ``int(width * bottleneck_multiple)``.
    enc_blocks, dec_blocks : str
        Block strings (see :func:`~braindiff_app.models._vdvae_blocks.parse_layer_string`).
    num_mixtures : int
        Components of the discretised mixture of logistics.
    no_bias_above : int
        Resolutions above this start from zeros instead of a learned state.
    pixel_mean, pixel_std : float
        Input normalisation ``(x - pixel_mean) / pixel_std`` on 0..255 pixels.
    n_latent_layers : int
        Default number of leading decoder layers whose latents are extracted (31 for Brain-Diffuser).
    """

    name: str = "imagenet64"
    image_size: int = 64
    width: int = 512
    zdim: int = 16
    bottleneck_multiple: float = 0.25
    enc_blocks: str = "64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5"
    dec_blocks: str = "1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12"
    num_mixtures: int = 10
    no_bias_above: int = 64
    pixel_mean: float = 115.92961967
    pixel_std: float = 69.37404
    n_latent_layers: int = 31

    def __post_init__(self) -> None:
        dec = parse_layer_string(self.dec_blocks)
        enc = parse_layer_string(self.enc_blocks)
        top = max(res for res, _ in dec)
        if top != self.image_size or enc[0][0] != self.image_size:
            raise ValueError(
                f"VDVAEConfig: image_size {self.image_size} must be the first encoder resolution ({enc[0][0]}) "
                f"and the largest decoder resolution ({top})."
            )
        if not 1 <= self.n_latent_layers <= len(dec):
            raise ValueError(
                f"VDVAEConfig: n_latent_layers must be in 1..{len(dec)} (decoder layers), got {self.n_latent_layers}."
            )

    @classmethod
    def imagenet64(cls) -> VDVAEConfig:
        """openai/vdvae's ImageNet-64 model (the one Brain-Diffuser uses)."""
        return cls()

    @classmethod
    def demo(cls) -> VDVAEConfig:
        """The small model trained on the demo stimulus world (``braindiff demo train-vdvae``)."""
        return cls(
            name="demo32",
            image_size=32,
            width=64,
            zdim=8,
            enc_blocks="32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1",
            dec_blocks="1x1,4m1,4x1,8m4,8x1,16m8,16x1,32m16",
            num_mixtures=5,
            n_latent_layers=7,
        )

    # -- layout of the latent vector ------------------------------------------------------------------------
    @property
    def n_layers_total(self) -> int:
        """Number of decoder layers (each holds one latent)."""
        return len(parse_layer_string(self.dec_blocks))

    def latent_shapes(self, n_layers: int | None = None) -> list[tuple[int, int, int]]:
        """Shapes (zdim, res, res) of the first ``n_layers`` latents (default ``n_latent_layers``)."""
        n_layers = self.check_n_layers(n_layers)
        return [(self.zdim, res, res) for res, _ in parse_layer_string(self.dec_blocks)[:n_layers]]

    def n_latent(self, n_layers: int | None = None) -> int:
        """Length of the flattened latent vector of the first ``n_layers`` layers."""
        return sum(math.prod(s) for s in self.latent_shapes(n_layers))

    def check_n_layers(self, n_layers: int | None) -> int:
        """Resolve ``n_layers`` (None: the default) and check it lies in 1..``n_layers_total``."""
        if n_layers is None:
            return self.n_latent_layers
        if isinstance(n_layers, bool) or not isinstance(n_layers, int | np.integer):
            raise TypeError(f"n_layers: expected an int, got {type(n_layers).__name__}.")
        if not 1 <= n_layers <= self.n_layers_total:
            raise ValueError(f"n_layers: expected 1..{self.n_layers_total} for model {self.name!r}, got {n_layers}.")
        return int(n_layers)

    # -- serialisation --------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VDVAEConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"VDVAEConfig: unknown keys {unknown}; expected a subset of {sorted(known)}.")
        return cls(**data)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the config as JSON (atomically)."""
        from braindiff_app.atomic import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> VDVAEConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: VDVAE config JSON not found.")
        return cls.from_dict(json.loads(path.read_text()))


class VDVAE(nn.Module):
    """Very deep VAE: ``encoder`` (bottom-up) and ``decoder`` (top-down latent layers + mixture head).

    Parameters
    ----------
    config : VDVAEConfig
    """

    def __init__(self, config: VDVAEConfig) -> None:
        super().__init__()
        if not isinstance(config, VDVAEConfig):
            raise TypeError(f"config: expected a VDVAEConfig, got {type(config).__name__}.")
        self.config = config
        self.encoder = Encoder(config.width, config.bottleneck_multiple, config.enc_blocks)
        self.decoder = Decoder(config.width, config.zdim, config.bottleneck_multiple, config.dec_blocks,
                               config.num_mixtures, config.no_bias_above)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8-valued images (n, H, W, 3) -> normalised network input (n, 3, H, W) in the model's dtype."""
        x = images.permute(0, 3, 1, 2).to(self.decoder.gain.dtype)
        return (x - self.config.pixel_mean) / self.config.pixel_std

    def top_down(
        self,
        n: int,
        draw: Callable[[tuple[int, ...]], torch.Tensor],
        activations: dict[int, torch.Tensor] | None = None,
        latents: Sequence[torch.Tensor] = (),
        posterior: str = "sample",
        temperature: float = 1.0,
        n_blocks: int | None = None,
        with_kl: bool = False,
    ) -> tuple[dict[int, torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Run the decoder layers from the top.

        Layer i takes its latent from ``latents[i]`` when given, else from the posterior (when ``activations``
        are given: its mean or a sample), else from the prior with standard deviation scaled by ``temperature``.

        Parameters
        ----------
        n : int
            Batch size.
        draw : callable
            ``draw(shape)`` returns standard normal noise of shape (n, *shape) on the model's device.
        activations : dict or None
            Encoder output (``{res: (n, width, res, res)}``).
        latents : sequence of torch.Tensor
            Fixed latents for the first layers, each (n, zdim, res, res).
        posterior : str in {"mean", "sample"}
        temperature : float
        n_blocks : int or None
            Stop after this many layers (None: all).
        with_kl : bool
            Also return each posterior layer's KL to its prior, (n, zdim, res, res), in nats.

        Returns
        -------
        states : dict of int to torch.Tensor
            Decoder state per resolution.
        zs : list of torch.Tensor
            The latent used at each layer run.
        kls : list of torch.Tensor
            Empty unless ``with_kl``.
        """
        xs = self.decoder.start_states(n)
        zs: list[torch.Tensor] = []
        kls: list[torch.Tensor] = []
        for i, block in enumerate(self.decoder.dec_blocks[:n_blocks]):
            block: DecBlock
            if block.base not in xs:
                xs[block.base] = self.decoder.gain.new_zeros(n, self.config.width, block.base, block.base)
            x = block.state_in(xs)
            pm, pv, x_next = block.prior_step(x)
            if i < len(latents):
                z = latents[i]
            elif activations is not None:
                qm, qv = block.posterior(x, activations[block.base])
                z = qm if posterior == "mean" else qm + torch.exp(qv) * draw(qm.shape[1:])
                if with_kl:
                    kls.append(gaussian_kl(qm, pm, qv, pv))
            else:
                z = pm + torch.exp(pv) * temperature * draw(pm.shape[1:])
            zs.append(z)
            xs[block.base] = block.state_out(x_next, z)
        return xs, zs, kls

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative ELBO of uint8-valued images (n, H, W, 3), per sub-pixel in nats (training objective).

        Returns
        -------
        dict with "elbo", "distortion", "rate": each a tensor of shape (n,)
        """
        n = images.shape[0]
        activations = self.encoder(self.normalise(images))
        xs, _, kls = self.top_down(n, lambda shape: torch.randn((n, *shape), device=images.device,
                                                                   dtype=activations[self.config.image_size].dtype),
                                   activations=activations, with_kl=True)
        px_z = self.decoder.final(xs[self.config.image_size])
        target = images.to(px_z.dtype) / 127.5 - 1.0
        distortion = self.decoder.out_net.nll(px_z, target)
        rate = sum(kl.sum(dim=(1, 2, 3)) for kl in kls) / (images.shape[1] * images.shape[2] * 3)
        return {"elbo": distortion + rate, "distortion": distortion, "rate": rate}


# -- loading and saving ---------------------------------------------------------------------------------------
def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: VDVAE weights not found (the real tier needs imagenet64-iter-1600000-model-ema.th from "
            "openai/vdvae; set BRAINDIFF_VDVAE_CHECKPOINT or --vdvae-checkpoint)."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}.")
    # Checkpoints saved from a DistributedDataParallel model carry a "module." prefix.
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_vdvae(weights_path: str | os.PathLike, config: VDVAEConfig | None = None) -> VDVAE:
    """Load VDVAE weights (a ``torch.save``d state dict or a safetensors file), strictly, in eval mode, on the CPU.

    Parameters
    ----------
    weights_path : str or path-like
        ``imagenet64-iter-1600000-model-ema.th`` (loaded with ``weights_only=True``) or a ``.safetensors`` file.
    config : VDVAEConfig or None
        Hyper-parameters; None means :meth:`VDVAEConfig.imagenet64`.

    Returns
    -------
    VDVAE
        Parameters frozen (``requires_grad=False``); move it with ``.to(device)``.
    """
    config = VDVAEConfig.imagenet64() if config is None else config
    path = Path(weights_path)
    state = _read_state_dict(path)
    with torch.device("meta"):
        model = VDVAE(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{label} {len(keys)} (e.g. {keys[0]}"
            + (f": expected {tuple(expected[keys[0]].shape)}, got {tuple(state[keys[0]].shape)}" if label == "shape"
               else "") + ")"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if keys
        )
        raise ValueError(
            f"{path}: weights do not match VDVAE config {config.name!r}: {details}. "
            "Pass the config the weights were trained with (imagenet64 for the openai checkpoint)."
        )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def save_vdvae(model: VDVAE, folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (atomically); returns the folder."""
    from safetensors.torch import save

    from braindiff_app.atomic import atomic_write_bytes

    folder = Path(folder)
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS_NAME, save(state, metadata={"format": "pt", "model": model.config.name}))
    model.config.to_json(folder / CONFIG_NAME)
    return folder


def load_demo_vdvae(models_dir: str | os.PathLike) -> VDVAE:
    """Load the committed demo VDVAE.

    Parameters
    ----------
    models_dir : str or path-like
        ``settings.demo_models_dir`` (holding ``vdvae/``), or the ``vdvae`` folder itself (with
        ``config.json`` and ``model.safetensors``).

    Returns
    -------
    VDVAE
        In eval mode on the CPU.
    """
    folder = Path(models_dir)
    if not (folder / CONFIG_NAME).is_file():
        folder = folder / "vdvae"
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path}: demo VDVAE config not found; train it with `braindiff demo train-vdvae`."
        )
    return load_vdvae(folder / WEIGHTS_NAME, VDVAEConfig.from_json(config_path))


# -- arrays in, arrays out ------------------------------------------------------------------------------------
def _check_images(images: np.ndarray, name: str = "images") -> None:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{name}: expected uint8 array of shape (n_images, height, width, 3), got {images.dtype} "
            f"array of shape {images.shape}."
        )


def _image_generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def _drawer(generators: list[torch.Generator], device: torch.device, dtype: torch.dtype, kind: str = "normal"):
    """``draw(shape) -> (n, *shape)`` noise; row i comes from generator i alone (float32 on the device, then cast).

    Generators live on the model's device: a seed gives the same noise on every run on the same device type
    (CPU and CUDA random streams differ).
    """
    sample = torch.randn if kind == "normal" else torch.rand

    def draw(shape: tuple[int, ...]) -> torch.Tensor:
        noise = torch.stack([sample(tuple(shape), generator=g, device=device) for g in generators])
        return noise.to(dtype=dtype)

    return draw


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}.")
    starts = range(0, n, int(batch_size))
    return tqdm(starts, desc=desc, unit="batch", disable=not progress or len(starts) <= 1)


def _model_place(model: VDVAE) -> tuple[torch.device, torch.dtype]:
    if not isinstance(model, VDVAE):
        raise TypeError(f"model: expected a VDVAE, got {type(model).__name__}.")
    param = model.decoder.gain
    return param.device, param.dtype


def extract_latents(
    model: VDVAE,
    images: np.ndarray,
    n_layers: int | None = None,
    mode: str = "mean",
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
    resample: str = "torch-bilinear",
) -> np.ndarray:
    """Latents of the first ``n_layers`` decoder layers for each image, flattened and concatenated.

    Parameters
    ----------
    model : VDVAE
        On its device (inputs are moved there).
    images : array of shape (n_images, height, width, 3), uint8
        Images of another size than ``model.config.image_size`` are resized (bilinear, antialiased), as the
        reference resizes NSD's 425 px stimuli to 64 px.
    n_layers : int or None, default None
        Leading decoder layers to keep; None: ``model.config.n_latent_layers`` (31 for imagenet64).
    mode : str in {"mean", "sample"}, default "mean"
        "mean": posterior means, each layer conditioned on the means above (reproducible, no noise).
        "sample": posterior samples as in the reference, image i's noise seeded by ``(seed, i)``.
    seed : int, default 0
        Seed for ``mode="sample"``.
    batch_size : int, default 32
    progress : bool, default True
        Show a tqdm bar over batches.
    resample : str in {"torch-bilinear", "bilinear"}, default "torch-bilinear"
        Input resize (see :func:`~braindiff_app.images.resize_images`): ``"bilinear"`` is PIL's, as the reference.

    Returns
    -------
    array of shape (n_images, n_latent), float32
        ``n_latent = model.config.n_latent(n_layers)`` (91168 for imagenet64 and 31 layers); each layer's
        (zdim, res, res) block flattened in C order, layers in decoder order.
    """
    device, dtype = _model_place(model)
    _check_images(images)
    check_in_allowed(mode, LATENT_MODES, "mode")
    check_in_allowed(resample, INPUT_RESIZES, "resample")
    config = model.config
    n_layers = config.check_n_layers(n_layers)
    out = np.empty((images.shape[0], config.n_latent(n_layers)), dtype=np.float32)
    size = config.image_size
    with torch.inference_mode():
        for start in _batches(len(images), batch_size, progress, "VDVAE latents"):
            batch = torch.from_numpy(resize_images(np.array(images[start : start + batch_size]), size,
                                                   resample=resample))
            batch = batch.to(device)
            n = batch.shape[0]
            seeds = [np.random.SeedSequence([seed, start + i]).generate_state(1)[0] for i in range(n)]
            activations = model.encoder(model.normalise(batch))
            draw = _drawer(_image_generators(seeds, device), device, dtype)
            _, zs, _ = model.top_down(n, draw, activations=activations, posterior=mode, n_blocks=n_layers)
            flat = torch.cat([z.reshape(n, -1) for z in zs], dim=1)
            out[start : start + n] = flat.float().cpu().numpy()
    return out


def split_latents(latents: torch.Tensor, shapes: Sequence[tuple[int, int, int]]) -> list[torch.Tensor]:
    """Inverse of the flattening: (n, n_latent) -> one (n, zdim, res, res) tensor per layer."""
    sizes = [math.prod(s) for s in shapes]
    return [chunk.reshape(-1, *s) for chunk, s in zip(torch.split(latents, sizes, dim=1), shapes, strict=True)]


def decode_latents(
    model: VDVAE,
    latents: np.ndarray,
    n_layers: int | None = None,
    temperature: float = 1.0,
    seeds: np.ndarray | Sequence[int] | None = None,
    batch_size: int = 32,
    pixels: str = "mode",
    progress: bool = True,
    quantise: str = "round",
    uniform: str = "clamp",
) -> np.ndarray:
    """Decode images whose first ``n_layers`` latents are given; later layers are drawn from the prior.

    Parameters
    ----------
    model : VDVAE
        On its device.
    latents : array of shape (n_images, n_latent)
        As returned by :func:`extract_latents` (or predicted from fMRI).
    n_layers : int or None, default None
        Layers the latents cover; None: ``model.config.n_latent_layers``.
    temperature : float, default 1.0
        Prior standard deviation scale for the remaining layers (the reference uses 1).
    seeds : int array of shape (n_images,) or None
        Seed of each image's noise (prior layers and, for ``pixels="sample"``, the pixels). None: 0..n-1.
        An image's result depends on its latents and seed only, not on the batch it is decoded in (for a given
        device type: CPU and CUDA draw different random streams from the same seed).
    batch_size : int, default 32
    pixels : str in {"mode", "sample"}, default "mode"
        "mode": each pixel from the most probable mixture component's mean (no pixel noise).
        "sample": a sample of the discretised mixture of logistics, as openai/vdvae and the reference draw.
    progress : bool, default True
    quantise : str in {"round", "truncate"}, default "round"
        [-1, 1] -> 0..255: ``(x + 1) * 127.5`` rounded, or truncated (``astype(uint8)``) as openai/vdvae's
        ``DmolNet.sample`` (about half the sub-pixels one level darker than rounding).
    uniform : str in {"clamp", "rescale"}, default "clamp"
        How ``pixels="sample"`` keeps its uniform noise inside [1e-5, 1 - 1e-5] (see ``DmolNet.pixels``).

    Returns
    -------
    array of shape (n_images, image_size, image_size, 3), uint8
    """
    device, dtype = _model_place(model)
    check_in_allowed(pixels, PIXEL_MODES, "pixels")
    check_in_allowed(quantise, QUANTISE_MODES, "quantise")
    check_in_allowed(uniform, UNIFORM_MODES, "uniform")
    config = model.config
    n_layers = config.check_n_layers(n_layers)
    latents = np.asarray(latents)
    expected = config.n_latent(n_layers)
    if latents.ndim != 2 or latents.shape[1] != expected:
        raise ValueError(
            f"latents: expected shape (n_images, {expected}) for {n_layers} layers of model {config.name!r}, "
            f"got {latents.shape}."
        )
    n_total = latents.shape[0]
    seeds = np.arange(n_total) if seeds is None else np.asarray(seeds)
    if seeds.shape != (n_total,) or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seeds: expected an int array of shape ({n_total},), got {seeds.dtype} {seeds.shape}.")
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature: expected a finite value >= 0, got {temperature}.")
    size, m = config.image_size, config.num_mixtures
    out = np.empty((n_total, size, size, 3), dtype=np.uint8)
    shapes = config.latent_shapes(n_layers)
    with torch.inference_mode():
        for start in _batches(n_total, batch_size, progress, "VDVAE decode"):
            chunk = torch.from_numpy(np.ascontiguousarray(latents[start : start + batch_size], dtype=np.float32))
            n = chunk.shape[0]
            generators = _image_generators(seeds[start : start + n], device)
            layers = [z.to(device=device, dtype=dtype) for z in split_latents(chunk, shapes)]
            xs, _, _ = model.top_down(n, _drawer(generators, device, dtype), latents=layers, temperature=temperature)
            px_z = model.decoder.final(xs[size])
            uniforms = None
            if pixels == "sample":
                uniform = _drawer(generators, device, dtype, kind="uniform")
                uniforms = (uniform((size, size, m)), uniform((size, size, 3)))
            x = model.decoder.out_net.pixels(px_z, pixels, uniforms, uniform=uniform).float()
            levels = (x + 1.0) * 127.5
            levels = levels.round() if quantise == "round" else levels.floor()  # truncation: values are >= 0
            out[start : start + n] = levels.clamp(0, 255).to(torch.uint8).cpu().numpy()
    return out

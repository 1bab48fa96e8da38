"""Evaluation networks: local weight files, loading, and feature extraction as the reference does it.

Every network sees each image resized to 224 x 224 with PIL's bilinear filter (no crop, as torchvision's
``resize`` on PIL images in the reference), scaled to [0, 1] and normalised (ImageNet mean/std for the
torchvision networks, CLIP's for CLIP). Features are read at these layers:

========== =========================== ======================================================
metric     network                     layer
========== =========================== ======================================================
AlexNet(2) torchvision AlexNet         ``features[4]`` (ReLU after conv 2)
AlexNet(5) torchvision AlexNet         ``features[11]`` (ReLU after conv 5)
Inception  torchvision Inception-v3    ``avgpool`` (``transform_input=True``, as pretrained)
CLIP       CLIP ViT-L/14 vision        image embedding (post-layernorm CLS token, projected)
EffNet-B   torchvision EfficientNet-B1 ``avgpool``
SwAV       SwAV ResNet-50              ``avgpool``
========== =========================== ======================================================

Weights come from local files only, under the names torchvision and torch.hub give them (so a torch hub
cache folder works as is); :func:`download_weights` fetches them only when called explicitly (CLI
``--download``). CLIP is the ``image_encoder`` of a Versatile Diffusion folder (CLIP ViT-L/14 with
projection); on the demo tier the demo's small encoder stands in, under the metric name ``demo-CLIP``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from braindiff_app.evaluation.registry import METRICS, check_metrics
from braindiff_app.images import check_images, resize_images

__all__ = [
    "BackboneSpec",
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbones",
    "build_network",
    "weight_file",
    "load_network",
    "load_clip_encoder",
    "load_backbones",
    "backbones_from_settings",
    "download_weights",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224


@dataclass(frozen=True)
class BackboneSpec:
    """A torchvision-architecture evaluation network and its weight file.

    Attributes
    ----------
    name : str
        Key in :data:`BACKBONES`.
    title : str
        Plain-words name.
    files : tuple of str
        Accepted weight file names, preferred first (torchvision's / torch.hub's own names).
    urls : tuple of str
        Download address of each file in ``files``.
    layers : tuple of (str, str)
        (metric, module path) pairs: where each metric reads its features.
    """

    name: str
    title: str
    files: tuple[str, ...]
    urls: tuple[str, ...]
    layers: tuple[tuple[str, str], ...]

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(metric for metric, _ in self.layers)


_TV = "https://download.pytorch.org/models/"
BACKBONES: dict[str, BackboneSpec] = {s.name: s for s in (
    BackboneSpec("alexnet", "torchvision AlexNet", ("alexnet-owt-7be5be79.pth",),
                 (_TV + "alexnet-owt-7be5be79.pth",), (("AlexNet(2)", "features.4"), ("AlexNet(5)", "features.11"))),
    BackboneSpec("inception", "torchvision Inception-v3", ("inception_v3_google-0cc3c7bd.pth",),
                 (_TV + "inception_v3_google-0cc3c7bd.pth",), (("Inception", "avgpool"),)),
    # IMAGENET1K_V2 is torchvision's default for EfficientNet-B1; the V1 file (same architecture) is accepted too.
    # The reference's efficientnet_b1(weights=True) is torchvision's legacy pretrained=True: IMAGENET1K_V1, the
    # rwightman port (the newer DEFAULT, IMAGENET1K_V2, is accepted when it is the only file present).
    BackboneSpec("efficientnet", "torchvision EfficientNet-B1",
                 ("efficientnet_b1_rwightman-bac287d4.pth", "efficientnet_b1-c27df63c.pth"),
                 (_TV + "efficientnet_b1_rwightman-bac287d4.pth", _TV + "efficientnet_b1-c27df63c.pth"),
                 (("EffNet-B", "avgpool"),)),
    BackboneSpec("swav", "SwAV ResNet-50 (facebookresearch/swav hub)", ("swav_800ep_pretrain.pth.tar",),
                 ("https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",), (("SwAV", "avgpool"),)),
)}


def build_network(name: str, device: str = "cpu"):
    """The architecture of evaluation network ``name`` with random weights, in eval mode.

    Parameters
    ----------
    name : str in {"alexnet", "inception", "efficientnet", "swav"}
    device : str, default "cpu"
        ``"meta"`` builds shapes only (no memory, no initialisation), for loading weights with ``assign=True``.

    Returns
    -------
    torch.nn.Module
    """
    import torch
    import torchvision.models as tvm

    builders: dict[str, Callable[[], Any]] = {
        "alexnet": lambda: tvm.alexnet(weights=None),
        # Pretrained Inception-v3 re-normalises its input (transform_input=True) and carries the aux head.
        "inception": lambda: tvm.inception_v3(weights=None, aux_logits=True, transform_input=True,
                                              init_weights=False),
        "efficientnet": lambda: tvm.efficientnet_b1(weights=None),
        "swav": lambda: tvm.resnet50(weights=None),
    }
    if name not in builders:
        raise ValueError(f"name: expected one of {list(builders)}, got {name!r}.")
    with torch.device(device):
        return builders[name]().eval()


def weight_file(name: str, weights_dir: str | os.PathLike) -> Path | None:
    """The weight file of network ``name`` found in ``weights_dir`` (first accepted name present), or None."""
    for file in BACKBONES[name].files:
        path = Path(weights_dir) / file
        if path.is_file():
            return path
    return None


def _missing_message(name: str, weights_dir: Path) -> str:
    spec = BACKBONES[name]
    also = f" (or {', '.join(spec.files[1:])})" if len(spec.files) > 1 else ""
    return (f"{weights_dir / spec.files[0]}{also}: missing; {spec.title} weights needed by "
            f"{', '.join(spec.metrics)}. Put the file there (from {spec.urls[0]}), point --eval-weights / "
            "BRAINDIFF_EVAL_WEIGHTS at the folder holding it, or rerun with --download.")


def _swav_state(state: Mapping[str, Any], model) -> dict[str, Any]:
    """SwAV checkpoints prefix keys with ``module.`` and carry a projection head and prototypes: keep the trunk."""
    import torch

    wanted = model.state_dict()
    trunk = {k.replace("module.", "", 1): v for k, v in state.items()}
    trunk = {k: v for k, v in trunk.items() if k in wanted}
    lacking = [k for k in wanted if k not in trunk and not k.startswith("fc.")]
    if lacking:
        raise ValueError(f"SwAV checkpoint: expected a ResNet-50 trunk, missing {len(lacking)} tensors "
                         f"(first: {lacking[0]}).")
    # The SwAV checkpoint has no classifier: a zero fc (unused; the features come from avgpool).
    return {**{k: torch.zeros(v.shape) for k, v in wanted.items() if k.startswith("fc.")}, **trunk}


def load_network(name: str, weights_dir: str | os.PathLike):
    """Build network ``name`` and load its weights from ``weights_dir`` (``torch.load(weights_only=True)``).

    Returns
    -------
    torch.nn.Module
        In eval mode, on the CPU, gradients off.

    Raises
    ------
    FileNotFoundError
        Naming the expected file and the metrics that need it.
    """
    import torch

    if name not in BACKBONES:
        raise ValueError(f"name: expected one of {list(BACKBONES)}, got {name!r}.")
    path = weight_file(name, weights_dir)
    if path is None:
        raise FileNotFoundError(_missing_message(name, Path(weights_dir)))
    model = build_network(name, device="meta")  # shapes only: the file's tensors are assigned below
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict (mapping of tensors), got {type(state).__name__}.")
    if name == "swav":
        state = _swav_state(state, model)
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: does not fit the {BACKBONES[name].title} architecture "
                         f"({str(exc).splitlines()[0]}); is it the right file?") from None
    model.requires_grad_(False)
    return model


def load_clip_encoder(folder: str | os.PathLike):
    """Load a CLIP vision encoder with projection (``transformers.CLIPVisionModelWithProjection``) from a folder.

    Parameters
    ----------
    folder : path
        E.g. a Versatile Diffusion folder's ``image_encoder`` (config.json + weights).

    Raises
    ------
    FileNotFoundError
        If the folder has no ``config.json``.
    """
    from transformers import CLIPVisionModelWithProjection

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder / 'config.json'}: missing; expected a CLIP vision encoder folder "
                                "(a Versatile Diffusion folder's image_encoder) for the CLIP metric.")
    model = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
    return model.eval().requires_grad_(False)


def _to_tensor(images: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...], device, dtype):
    import torch

    resized = resize_images(images, (size, size), resample="bilinear")
    x = torch.from_numpy(resized).to(device=device).permute(0, 3, 1, 2).to(dtype) / 255.0
    m = torch.tensor(mean, device=device, dtype=dtype)[None, :, None, None]
    s = torch.tensor(std, device=device, dtype=dtype)[None, :, None, None]
    return (x - m) / s


def _capture(model, paths: Mapping[str, str], x) -> dict[str, Any]:
    """Run ``model(x)`` and return the outputs of the named submodules, flattened per image."""
    outputs: dict[str, Any] = {}
    handles = []
    for metric, path in paths.items():
        def hook(module, inputs, output, metric=metric):
            outputs[metric] = output.detach().flatten(1).float().cpu()
        handles.append(model.get_submodule(path).register_forward_hook(hook))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


class Backbones:
    """The loaded evaluation networks, and which metrics could not be loaded and why.

    Build with :func:`load_backbones` or :func:`backbones_from_settings`; move with :meth:`to`.

    Parameters
    ----------
    networks : mapping of str to torch.nn.Module
        Keys from :data:`BACKBONES` (``alexnet``, ``inception``, ``efficientnet``, ``swav``).
    clip_encoder : CLIPVisionModelWithProjection or None
    clip_metric : str in {"CLIP", "demo-CLIP"}, default "CLIP"
        Name under which the CLIP encoder's identification score is reported.
    missing : mapping of str to str, optional
        Metric -> message naming the missing file.
    input_size : int, default 224
        Side in pixels of the torchvision networks' input (the reference: 224; smaller only for fast tests).
    """

    def __init__(self, networks: Mapping[str, Any] | None = None, clip_encoder=None, clip_metric: str = "CLIP",
                 missing: Mapping[str, str] | None = None, input_size: int = INPUT_SIZE) -> None:
        unknown = [k for k in (networks or {}) if k not in BACKBONES]
        if unknown:
            raise ValueError(f"networks: unknown key(s) {unknown}; expected some of {list(BACKBONES)}.")
        if clip_metric not in ("CLIP", "demo-CLIP"):
            raise ValueError(f"clip_metric: expected 'CLIP' or 'demo-CLIP', got {clip_metric!r}.")
        self.networks = dict(networks or {})
        self.clip_encoder = clip_encoder
        self.clip_metric = clip_metric
        self.missing = dict(missing or {})
        self.input_size = int(input_size)

    def __repr__(self) -> str:
        return f"Backbones(metrics={list(self.metrics)}, missing={list(self.missing)})"

    @property
    def metrics(self) -> tuple[str, ...]:
        """The network metrics these backbones can compute, in table order."""
        names = [m for name in self.networks for m in BACKBONES[name].metrics]
        if self.clip_encoder is not None:
            names.append(self.clip_metric)
        return tuple(m for m, info in METRICS.items() if info.feature_source in names)

    def to(self, device) -> Backbones:
        """Move every network to ``device`` (in place); returns self."""
        for model in self.networks.values():
            model.to(device)
        if self.clip_encoder is not None:
            self.clip_encoder.to(device)
        return self

    def features(self, images: np.ndarray, metrics: Iterable[str] | None = None,
                 batch_size: int = 32) -> dict[str, np.ndarray]:
        """Features of ``images`` for each network metric, as the reference extracts them.

        Parameters
        ----------
        images : array of shape (n_images, height, width, 3), uint8
        metrics : iterable of str or None, default None
            Network metrics wanted (None: all of :attr:`metrics`); each must be available.
        batch_size : int, default 32
            Images per forward pass.

        Returns
        -------
        dict of str to array of shape (n_images, n_features), float32
            E.g. AlexNet(2): 192 * 27 * 27 = 139968 features at 224 px; Inception: 2048; CLIP: 768. A metric that
            compares another's features (``CLIP 4-way``) gets that metric's array, computed once.
        """
        import torch

        check_images(images, "images")
        wanted = self.metrics if metrics is None else tuple(metrics)
        unavailable = [m for m in wanted if m not in self.metrics]
        if unavailable:
            reasons = "; ".join(self.missing.get(m, f"{m}: not loaded") for m in unavailable)
            raise ValueError(f"metrics: {unavailable} cannot be computed with these backbones ({reasons}).")
        sources = {m: METRICS[m].feature_source for m in wanted}
        chunks: dict[str, list[np.ndarray]] = {s: [] for s in sources.values()}
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size]
                for name, model in self.networks.items():
                    layers = {m: p for m, p in BACKBONES[name].layers if m in chunks}
                    if not layers:
                        continue
                    param = next(model.parameters())
                    x = _to_tensor(batch, self.input_size, IMAGENET_MEAN, IMAGENET_STD, param.device, param.dtype)
                    for metric, value in _capture(model, layers, x).items():
                        chunks[metric].append(value.numpy())
                if self.clip_metric in chunks:
                    from braindiff_app.models.clip_features import CLIP_MEAN, CLIP_STD

                    enc = self.clip_encoder
                    param = next(enc.parameters())
                    x = _to_tensor(batch, int(enc.config.image_size), CLIP_MEAN, CLIP_STD, param.device, param.dtype)
                    chunks[self.clip_metric].append(enc(pixel_values=x).image_embeds.float().cpu().numpy())
        features = {s: np.concatenate(v).astype(np.float32, copy=False) for s, v in chunks.items()}
        return {m: features[s] for m, s in sources.items()}


def load_backbones(weights_dir: str | os.PathLike, metrics: Iterable[str] | None = None,
                   clip_dir: str | os.PathLike | None = None, clip_metric: str = "CLIP",
                   input_size: int = INPUT_SIZE) -> Backbones:
    """Load the networks the requested metrics need; missing files are reported, not fatal.

    Parameters
    ----------
    weights_dir : path
        Folder with the torchvision / torch.hub weight files (see :data:`BACKBONES` for the names).
    metrics : iterable of str or None, default None
        Metrics wanted (None: all); only their networks are loaded.
    clip_dir : path or None, default None
        CLIP vision encoder folder (a Versatile Diffusion ``image_encoder``); None: no CLIP metric.
    clip_metric : str in {"CLIP", "demo-CLIP"}, default "CLIP"
        Name of the CLIP identification score for this encoder.
    input_size : int, default 224
        Side of the torchvision networks' input in pixels.

    Returns
    -------
    Backbones
        With ``missing`` naming each absent file and the metrics that need it. A warning lists them too.
    """
    wanted = check_metrics(metrics)
    weights_dir = Path(weights_dir)
    networks: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name, spec in BACKBONES.items():
        if not any(m in wanted for m in spec.metrics):
            continue
        try:
            networks[name] = load_network(name, weights_dir)
        except FileNotFoundError as exc:
            missing.update({m: str(exc) for m in spec.metrics if m in wanted})
    encoder = None
    if clip_metric in wanted:
        try:
            if clip_dir is None:
                raise FileNotFoundError(f"{clip_metric}: no CLIP vision encoder folder given (a Versatile "
                                        "Diffusion folder's image_encoder: set --vd-dir / BRAINDIFF_VD_DIR).")
            encoder = load_clip_encoder(clip_dir)
        except FileNotFoundError as exc:
            missing[clip_metric] = str(exc)
    if missing:
        messages = "\n".join(sorted(set(missing.values())))
        warnings.warn(f"evaluation: {', '.join(missing)} will not be computed:\n{messages}", UserWarning,
                      stacklevel=2)
    return Backbones(networks, encoder, clip_metric=clip_metric, missing=missing, input_size=input_size)


def backbones_from_settings(settings, metrics: Iterable[str] | None = None) -> Backbones:
    """Load the evaluation backbones named by :class:`~braindiff_app.config.Settings` (CPU; move with ``.to``).

    The torchvision networks come from ``settings.eval_weights``; CLIP from ``settings.eval_clip_dir``. When
    the real CLIP encoder is absent and the demo's is present, the score is reported as ``demo-CLIP``.
    """
    wanted = check_metrics(metrics)
    folder, clip_metric = settings.eval_clip_dir
    if metrics is None or "CLIP" in wanted or "demo-CLIP" in wanted:
        wanted = tuple(m for m in wanted if m not in ("CLIP", "demo-CLIP")) + (clip_metric,)
    return load_backbones(settings.eval_weights, wanted, clip_dir=folder, clip_metric=clip_metric)


def download_weights(weights_dir: str | os.PathLike, names: Iterable[str] | None = None,
                     progress: bool = True) -> list[Path]:
    """Download the missing weight files of the named networks into ``weights_dir`` (network access!).

    Only called on the user's explicit request (CLI ``--download``). Uses torch.hub's downloader and the
    torchvision / SwAV addresses in :data:`BACKBONES`; files already present are left alone.

    Parameters
    ----------
    weights_dir : path
    names : iterable of str or None, default None
        Keys of :data:`BACKBONES` (None: all).
    progress : bool, default True
        Show torch.hub's progress bar.

    Returns
    -------
    list of Path
        The files downloaded.
    """
    import torch.hub

    names = list(BACKBONES) if names is None else list(names)
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    fetched = []
    for name in names:
        if weight_file(name, weights_dir) is not None:
            continue
        spec = BACKBONES[name]
        target = weights_dir / spec.files[0]
        # torchvision names carry the first hex digits of the file's SHA-256: let torch.hub check them
        digest = re.search(r"-([0-9a-f]{8,})\.pth$", spec.files[0])
        torch.hub.download_url_to_file(spec.urls[0], str(target), hash_prefix=digest.group(1) if digest else None,
                                       progress=progress)
        fetched.append(target)
    return fetched

"""Feature extraction: the regression targets of a prepared subject's images (prepared-subject files -> features).

:func:`extract_vdvae_features` writes the VDVAE latents, :func:`extract_clip_features` the CLIP-vision and
CLIP-text token features, into ``settings.subject_dir("features", subject)``. Both are resumable: a split already
written by the same model and options is skipped (``overwrite=True`` redoes it), and the metadata file is written
first, so an interrupted run resumes split by split. ``braindiff extract vdvae`` / ``braindiff extract clip`` are
thin wrappers around them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from braindiff_app._bundle_io import read_json
from braindiff_app.arrays import read_array
from braindiff_app.atomic import atomic_path, atomic_save_npy, atomic_write_json, read_json_mark
from braindiff_app.config import Settings, check_in_allowed, resolve_device, resolve_dtype
from braindiff_app.protocol import Protocol, get_protocol

__all__ = ["SPLITS", "VDVAE_MODES", "extract_vdvae_features", "extract_clip_features", "require_prepared"]

#: The prepared splits, each written to its own features file.
SPLITS = ("train", "test")
#: How VDVAE latents are taken from the posterior (see :func:`extract_vdvae_features`).
VDVAE_MODES = ("mean", "sample")
# Images per chunk written to disk: bounds memory (real tier: 8859 x 257 x 768 float32 is 7 GB per split).
CHUNK = 512

#: Receives one line per file written or skipped.
LogCallback = Callable[[str], None]


def _log(log: LogCallback | None, message: str) -> None:
    if log is not None:
        log(message)


def extract_vdvae_features(
    settings: Settings,
    subject: int | str,
    *,
    mode: str | None = None,
    seed: int = 0,
    n_layers: int | None = None,
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = True,
    log: LogCallback | None = None,
    protocol: str | Protocol | None = None,
) -> Path:
    """Write the VDVAE latents of a prepared subject's train and test images.

    The model is the tier's (``settings.vdvae_path``): the committed demo VDVAE, or the real tier's imagenet64
    EMA checkpoint. It runs on ``settings.device``, in float32 unless ``settings.dtype`` asks for another.

    Parameters
    ----------
    settings : Settings
        Tier, workspace, model location, device and dtype.
    subject : int or str
        NSD subject number (1, 2, 5, 7; demo: 1), prepared (``images_{train,test}.npy``).
    mode : str in {"mean", "sample"}, optional
        - "mean": posterior means (reproducible; the braindiff protocol's);
        - "sample": seeded posterior samples (the reference code's).
        Default: the protocol's ``vdvae_latents``.
    seed : int, default 0
        Seed of ``mode="sample"``.
    n_layers : int, optional
        Leading decoder layers to keep (default: the model's, 31 for imagenet64).
    batch_size : int, default 32
        Images per forward pass (results do not depend on it).
    overwrite : bool, default False
        Recompute splits already written by the same model and options.
    progress : bool, default True
        tqdm progress bars.
    log : callable (str), optional
        Receives one line per split written or skipped.
    protocol : str in {"braindiff", "reference"} or Protocol, default "braindiff"
        Gives the default ``mode`` and the input resize (``vdvae_resize``; :mod:`braindiff_app.protocol`).

    Returns
    -------
    Path
        The features folder, holding:

        - ``vdvae_train.npy``, ``vdvae_test.npy``: arrays of shape (n_images, n_latent), float32 (n_latent is
          91168 for imagenet64's first 31 layers), rows in the prepared images' order;
        - ``vdvae.json``: model, weights, config, n_layers, mode, seed, dtype, layer_shapes, n_latent, n_images
          per split, image_size and library versions.

    Raises
    ------
    FileNotFoundError
        The prepared images are missing, or the real tier's VDVAE checkpoint is not configured.
    """
    import platform

    import torch

    from braindiff_app import __version__
    from braindiff_app.models.vdvae import extract_latents, load_demo_vdvae, load_vdvae

    protocol = get_protocol(protocol)
    mode = protocol.vdvae_latents if mode is None else mode
    check_in_allowed(mode, VDVAE_MODES, "mode")
    prepared = settings.subject_dir("prepared", subject)
    require_prepared(prepared, subject)
    out = settings.subject_dir("features", subject)
    sources = {split: prepared / f"images_{split}.npy" for split in SPLITS}
    for path in sources.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: prepared images not found; run `braindiff prepare --subject "
                                    f"{subject}` first.")
    weights = settings.vdvae_path
    if weights is None:
        raise FileNotFoundError("VDVAE checkpoint not configured: set BRAINDIFF_VDVAE_CHECKPOINT or pass "
                                "--vdvae-checkpoint imagenet64-iter-1600000-model-ema.th.")
    model = load_demo_vdvae(weights) if settings.tier == "demo" else load_vdvae(weights)
    config = model.config
    n_layers = config.check_n_layers(n_layers)
    device = resolve_device(settings.device)
    # The VDVAE runs in float32 unless a dtype is asked for explicitly (its KL/mixture maths is precision-hungry).
    dtype = torch.float32 if settings.dtype == "auto" else resolve_dtype(settings.dtype, device)
    model = model.to(device=device, dtype=dtype)
    identity = {
        "model": config.name, "weights": str(weights), "config": config.to_dict(), "n_layers": n_layers,
        "mode": mode, "seed": seed if mode == "sample" else None, "dtype": str(dtype).split(".")[-1],
        "protocol": protocol.name, "resize": protocol.vdvae_resize,
    }
    meta_path = out / "vdvae.json"
    previous = read_json_mark(meta_path) or {}  # damaged: redone, not a JSON error
    same = {k: previous.get(k) for k in identity} == identity
    out.mkdir(parents=True, exist_ok=True)
    if not same:
        atomic_write_json(meta_path, identity)  # written first, so an interrupted run resumes split by split
    counts = {}
    for split, source in sources.items():
        target = out / f"vdvae_{split}.npy"
        images = read_array(source)
        counts[split] = int(images.shape[0])
        if same and not overwrite and target.is_file():
            _log(log, f"{target} exists with the same model and options; skipped (--overwrite to redo)")
            continue
        latents = extract_latents(model, images, n_layers=n_layers, mode=mode, seed=seed, batch_size=batch_size,
                                  progress=progress, resample=protocol.vdvae_resize)
        atomic_save_npy(target, latents)
        _log(log, f"wrote {target} {latents.shape}")
    atomic_write_json(meta_path, {
        **identity,
        "layer_shapes": [list(s) for s in config.latent_shapes(n_layers)],
        "n_latent": config.n_latent(n_layers),
        "n_images": counts,
        "image_size": config.image_size,
        "versions": {"braindiff": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    })
    return out


def require_prepared(prepared: Path, subject: int | str) -> None:
    """Raise FileNotFoundError when ``prepared`` holds prepare's outputs (``fmri_*.npy``, its ``.partial`` folder)
    but not ``meta.json``, the file ``braindiff prepare`` writes last: the preparation stopped part way."""
    started = any((prepared / name).exists() for name in ("fmri_train.npy", "fmri_test.npy", ".partial"))
    if started and not (prepared / "meta.json").is_file():
        raise FileNotFoundError(f"{prepared / 'meta.json'}: not found, so subject {subject}'s preparation is missing "
                                f"or did not finish; run `braindiff prepare --subject {subject}` (it resumes).")


def _write_in_chunks(path: Path, n: int, compute: Callable[[int, int], np.ndarray]) -> None:
    """Fill ``path`` (.npy, float32) with ``compute(start, stop)`` chunk by chunk, under a temporary name, then
    rename (the first chunk gives the shape: (n, *chunk.shape[1:]))."""
    with atomic_path(path) as tmp:
        array = None
        for start in range(0, n, CHUNK):
            chunk = compute(start, min(start + CHUNK, n))
            if array is None:
                array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, *chunk.shape[1:]))
            array[start:start + len(chunk)] = chunk
        array.flush()
        del array


def extract_clip_features(
    settings: Settings,
    subject: int | str,
    *,
    batch_size: int = 16,
    overwrite: bool = False,
    progress: bool = True,
    log: LogCallback | None = None,
    protocol: str | Protocol | None = None,
) -> Path:
    """Write the CLIP-vision and CLIP-text token features of a prepared subject's images and captions.

    The encoders are those inside the tier's Versatile Diffusion folder (``settings.vd_path``), on
    ``settings.device``, in float32 unless ``settings.dtype`` asks for another. Features made by another model
    (path or content fingerprint), dtype or transformers version are recomputed, never reused.

    Parameters
    ----------
    settings : Settings
        Tier, workspace, model location, device and dtype.
    subject : int or str
        NSD subject number (1, 2, 5, 7; demo: 1), prepared (``images_{train,test}.npy``,
        ``captions_{train,test}.json``).
    batch_size : int, default 16
        Images (or images' captions) per forward pass.
    overwrite : bool, default False
        Recompute splits already written by the same model, dtype and transformers version.
    progress : bool, default True
        tqdm progress bars.
    log : callable (str), optional
        Receives one line per file skipped and one when done.
    protocol : str in {"braindiff", "reference"} or Protocol, default "braindiff"
        Gives the CLIP-vision input resize (``clip_resize``; :mod:`braindiff_app.protocol`). The captions are the
        prepared subject's (selected by ``braindiff prepare --protocol``).

    Returns
    -------
    Path
        The features folder, holding:

        - ``clip_vision_train.npy``, ``clip_vision_test.npy``: arrays of shape (n_images, 257, clip_dim), float32;
        - ``clip_text_train.npy``, ``clip_text_test.npy``: arrays of shape (n_images, 77, clip_dim), float32 (mean
          over each image's captions);
        - ``clip.json``: model path and fingerprint, dtype, transformers and torch versions, image encoder,
          clip_dim, n_tokens, recipe and creation time.

    Raises
    ------
    FileNotFoundError
        Prepared images or captions missing, or no Versatile Diffusion folder for the tier.
    """
    from datetime import UTC, datetime

    import torch
    import transformers

    from braindiff_app.models.clip_features import clip_text_features, clip_vision_features
    from braindiff_app.models.versatile import load_versatile_diffusion
    from braindiff_app.provenance import files_fingerprint

    protocol = get_protocol(protocol)
    prepared = settings.subject_dir("prepared", subject)
    require_prepared(prepared, subject)
    out = settings.subject_dir("features", subject)
    needed = [prepared / f"{kind}_{split}.{ext}" for split in SPLITS
              for kind, ext in (("images", "npy"), ("captions", "json"))]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise FileNotFoundError(f"prepared subject: missing {', '.join(missing)}. Run `braindiff prepare "
                                f"--subject {subject}` first.")
    folder = settings.vd_path
    if folder is None or not folder.exists():
        raise FileNotFoundError(f"Versatile Diffusion folder ({folder}): not found for the {settings.tier} tier; set "
                                "BRAINDIFF_VD_DIR or pass --vd-dir (a folder in diffusers layout).")
    device = resolve_device(settings.device)
    # Regression targets are kept in float32 unless a dtype is asked for explicitly (fp16 would round them).
    dtype = torch.float32 if settings.dtype == "auto" else resolve_dtype(settings.dtype, device)
    # Only the CLIP parts: the UNets (10 GB in float32 on the real tier) are never read.
    components = load_versatile_diffusion(folder, dtype=dtype, parts=("image_encoder", "text_encoder", "tokenizer"))
    image_encoder = components.image_encoder.to(device)
    text_encoder = components.text_encoder.to(device)
    # What made the features: features of another model (or retrained weights at the same path), dtype or
    # transformers version are never reused.
    identity = {"model": str(Path(folder).resolve()), "model_fingerprint": files_fingerprint(folder),
                "dtype": str(dtype).removeprefix("torch."),
                "transformers": transformers.__version__, "protocol": protocol.name,
                "clip_resize": protocol.clip_resize}
    meta_path = out / "clip.json"
    previous = read_json_mark(meta_path) or {}  # damaged: redone, not a JSON error
    reuse = not overwrite and {k: previous.get(k) for k in identity} == identity
    out.mkdir(parents=True, exist_ok=True)
    if not reuse:
        atomic_write_json(meta_path, identity)  # written first, so an interrupted run resumes split by split
    for split in SPLITS:
        vision_path, text_path = out / f"clip_vision_{split}.npy", out / f"clip_text_{split}.npy"
        images = read_array(prepared / f"images_{split}.npy")
        captions = read_json(prepared / f"captions_{split}.json", "prepare the subject first (`braindiff prepare`)")
        jobs = [(vision_path, len(images), lambda a, b, images=images: clip_vision_features(
                    image_encoder, np.asarray(images[a:b]), batch_size, progress=progress,
                    resize=protocol.clip_resize)),
                (text_path, len(captions), lambda a, b, captions=captions: clip_text_features(
                    text_encoder, components.tokenizer, captions[a:b], batch_size, progress=progress))]
        for path, n, compute in jobs:
            if reuse and path.exists():
                _log(log, f"{path} exists from the same model, dtype and transformers; skipped (--overwrite to "
                          "redo)")
            else:
                _write_in_chunks(path, n, compute)
    atomic_write_json(meta_path, {
        **identity,
        "image_encoder": image_encoder.config.to_dict().get("_name_or_path") or "CLIPVisionModelWithProjection",
        "clip_dim": int(image_encoder.config.projection_dim),
        "n_tokens": {"vision": int(np.load(out / "clip_vision_test.npy", mmap_mode="r").shape[1]),
                     "text": int(components.tokenizer.model_max_length)},
        "recipe": "vision: post_layernorm + visual_projection on all tokens / norm(token 0); text: text_projection on "
                  "all tokens / norm(pooled EOS output), mean over captions",
        "torch": torch.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    _log(log, f"wrote CLIP features to {out}")
    return out

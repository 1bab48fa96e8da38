"""``braindiff extract clip``: CLIP-vision and CLIP-text token features of a prepared subject's stimuli."""

from __future__ import annotations

import argparse
from pathlib import Path

from braindiff_app.cli import add_settings_arguments, settings_from_args
from braindiff_app.cli.extract import extract_subparsers


def register(subparsers, demo_subparsers) -> None:
    parser = extract_subparsers(subparsers).add_parser(
        "clip",
        help="CLIP-vision (n, 257, clip_dim) and CLIP-text (n, 77, clip_dim) features",
        description="Read the prepared subject's images_{train,test}.npy and captions_{train,test}.json, write "
        "clip_vision_{train,test}.npy and clip_text_{train,test}.npy (float32) and clip.json (model and library "
        "versions) into the subject's features folder. Uses the CLIP encoders inside the Versatile Diffusion "
        "folder (--vd-dir; the demo tier's committed one by default), in float32 unless --dtype says otherwise. A "
        "split already written by the same model, dtype and transformers version is skipped (rerun to resume; "
        "--overwrite to redo); features made by anything else are recomputed.",
    )
    parser.add_argument("--subject", required=True, help="subject number (1, 2, 5, 7; demo: 1)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--overwrite", action="store_true", help="recompute splits that are already written")
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


# Images per chunk written to disk: bounds memory (real tier: 8859 x 257 x 768 float32 is 7 GB per split).
CHUNK = 512


def _write_in_chunks(path: Path, n: int, compute) -> None:
    """Fill ``path`` (.npy) with ``compute(start, stop)`` chunk by chunk, under a temporary name, then rename."""
    import numpy as np

    from braindiff_app.atomic import atomic_path

    with atomic_path(path) as tmp:
        array = None
        for start in range(0, n, CHUNK):
            chunk = compute(start, min(start + CHUNK, n))
            if array is None:
                array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, *chunk.shape[1:]))
            array[start:start + len(chunk)] = chunk
        array.flush()
        del array


def run(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    import numpy as np
    import torch
    import transformers

    from braindiff_app.atomic import atomic_write_json
    from braindiff_app.config import resolve_device, resolve_dtype
    from braindiff_app.models.clip_features import clip_text_features, clip_vision_features
    from braindiff_app.models.versatile import load_versatile_diffusion
    from braindiff_app.provenance import files_fingerprint

    settings = settings_from_args(args)
    prepared = settings.subject_dir("prepared", args.subject)
    out = settings.subject_dir("features", args.subject)
    needed = [prepared / f"{kind}_{split}.{ext}" for split in ("train", "test")
              for kind, ext in (("images", "npy"), ("captions", "json"))]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise FileNotFoundError(f"prepared subject: missing {', '.join(missing)}. Run `braindiff prepare "
                                f"--subject {args.subject}` first.")
    folder = settings.vd_path
    if folder is None or not folder.exists():
        raise FileNotFoundError(f"Versatile Diffusion folder ({folder}): not found for the {settings.tier} tier; set "
                                "BRAINDIFF_VD_DIR or pass --vd-dir (a folder in diffusers layout).")
    device = resolve_device(settings.device)
    # Regression targets are kept in float32 unless a dtype is asked for explicitly (fp16 would round them).
    dtype = torch.float32 if settings.dtype == "auto" else resolve_dtype(settings.dtype, device)
    components = load_versatile_diffusion(folder, dtype=dtype)
    image_encoder = components.image_encoder.to(device)
    text_encoder = components.text_encoder.to(device)
    # What made the features: features of another model (or retrained weights at the same path), dtype or
    # transformers version are never reused.
    identity = {"model": str(Path(folder).resolve()), "model_fingerprint": files_fingerprint(folder),
                "dtype": str(dtype).removeprefix("torch."),
                "transformers": transformers.__version__}
    meta_path = out / "clip.json"
    previous = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    reuse = not args.overwrite and {k: previous.get(k) for k in identity} == identity
    out.mkdir(parents=True, exist_ok=True)
    if not reuse:
        atomic_write_json(meta_path, identity)  # written first, so an interrupted run resumes split by split
    for split in ("train", "test"):
        vision_path, text_path = out / f"clip_vision_{split}.npy", out / f"clip_text_{split}.npy"
        images = np.load(prepared / f"images_{split}.npy", mmap_mode="r", allow_pickle=False)
        captions = json.loads((prepared / f"captions_{split}.json").read_text())
        jobs = [(vision_path, len(images), lambda a, b, images=images: clip_vision_features(
                    image_encoder, np.asarray(images[a:b]), args.batch_size, progress=True)),
                (text_path, len(captions), lambda a, b, captions=captions: clip_text_features(
                    text_encoder, components.tokenizer, captions[a:b], args.batch_size, progress=True))]
        for path, n, compute in jobs:
            if reuse and path.exists():
                print(f"{path} exists from the same model, dtype and transformers; skipped (--overwrite to redo)")
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
    print(f"wrote CLIP features to {out}")
    return 0

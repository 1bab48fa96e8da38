"""Synthetic bundles for tests and benchmarks (no model involved)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from braindiff_app.bundles import IMAGE_KINDS, Bundle, BundleWriter, Manifest


def synthetic_image(trial: int, kind_index: int, size: int) -> np.ndarray:
    """A smooth, distinct uint8 image (size, size, 3) for a (trial, kind): gradients plus a square."""
    rng = np.random.default_rng(trial * 31 + kind_index)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    base = rng.uniform(0, 255, size=3)
    slope = rng.uniform(-120, 120, size=(2, 3))
    image = base + y[..., None] * slope[0] + x[..., None] * slope[1]
    a, b = sorted(rng.integers(0, size, 2))
    image[a:b + 1, a:b + 1] = 255 - image[a:b + 1, a:b + 1]
    return np.clip(image, 0, 255).astype(np.uint8)


CAPTION_WORDS = ("face", "building", "red ball", "person", "word sign", "tree", "car", "cup")


def make_bundle(
    root: Path,
    name: str = "test-subj01",
    subject: str = "1",
    tier: str = "demo",
    n_trials: int = 6,
    size: int = 32,
    kinds: tuple[str, ...] = IMAGE_KINDS,
    settings: dict | None = None,
) -> Bundle:
    """Write and return a complete bundle of synthetic images with captions like 'a photo of a face 3'
    (``settings`` are added to the manifest's)."""
    manifest = Manifest(name=name, subject=subject, tier=tier, n_trials=n_trials, kinds=kinds, image_size=size,
                        settings={"seed": 0, **(settings or {})}, models={"source": "synthetic"})
    writer = BundleWriter(root, manifest)
    for i in writer.pending():
        word = CAPTION_WORDS[i % len(CAPTION_WORDS)]
        images = {k: synthetic_image(i, IMAGE_KINDS.index(k), size) for k in kinds}
        writer.write_trial(i, trial_id=1000 + 7 * i, captions=[f"a photo of a {word} {i}", f"image number {i}"],
                           images=images)
    return writer.finalize()

"""Tiny Versatile Diffusion folders with random weights, saved and loaded back through the real loader."""

from __future__ import annotations

import pytest
import torch

# One thread: these models are tiny, and on a shared CPU extra threads only wait on each other.
torch.set_num_threads(1)

CAPTIONS = [
    "a red ball on the grass", "a blue house under the sky", "a smiling face on the left",
    "a sign that says stop", "two people standing on a street", "a green tree in a field",
] * 3


def _make_vd_folder(path, seed: int = 0):
    """Save tiny random components (16 px images, clip_dim 16) as a diffusers-layout folder; return the path."""
    from braindiff_app.demo.vd import build_components, train_clip_tokenizer
    from braindiff_app.models.versatile import save_versatile_diffusion

    tokenizer = train_clip_tokenizer(CAPTIONS, vocab_size=600)
    save_versatile_diffusion(build_components(tokenizer, "tiny", seed=seed), path)
    return path


@pytest.fixture(scope="session")
def vd_folder(tmp_path_factory):
    return _make_vd_folder(tmp_path_factory.mktemp("vd") / "vd")


@pytest.fixture(scope="session")
def vd(vd_folder):
    from braindiff_app.models.versatile import load_versatile_diffusion

    return load_versatile_diffusion(vd_folder)

"""Fixtures for evaluation tests: random-weight backbones saved under torchvision's file names, tiny CLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from braindiff_app.evaluation import BACKBONES, build_network


def _make_weights(folder: Path, names=tuple(BACKBONES), seed: int = 0) -> Path:
    """Save random-initialised networks of the real architectures under the file names the loader expects."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        torch.manual_seed(seed)
        state = build_network(name).state_dict()
        if name == "swav":  # as the SwAV hub file: "module." prefix, projection head, no classifier
            state = {f"module.{k}": v for k, v in state.items() if not k.startswith("fc.")}
            state["module.projection_head.0.weight"] = torch.zeros(4, 2048)
        torch.save(state, folder / BACKBONES[name].files[0])
    return folder


def _make_images(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random RGB images (distinct low-frequency layouts): array (n, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, 4, 4, 3)).astype(np.float64)
    reps = -(-size // 4)
    fine = np.kron(coarse, np.ones((1, reps, reps, 1)))[:, :size, :size]
    noise = rng.normal(0, 12, size=fine.shape)
    return np.clip(fine + noise, 0, 255).astype(np.uint8)


def _make_clip_encoder(folder: Path, seed: int = 0) -> Path:
    """A tiny random CLIPVisionModelWithProjection (32 px, patch 2: 257 tokens) saved with save_pretrained."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, projection_dim=16, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=2)
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(1)  # the test machine is shared: one thread is fastest


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    return _make_weights(tmp_path_factory.mktemp("eval_weights"))


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return _make_clip_encoder(tmp_path_factory.mktemp("vd") / "image_encoder")


@pytest.fixture(scope="session")
def backbones(weights_dir):
    """Every torchvision backbone loaded once through the real loader, at a small input size for speed."""
    from braindiff_app.evaluation import load_backbones

    return load_backbones(weights_dir, metrics=["AlexNet(2)", "AlexNet(5)", "Inception", "EffNet-B", "SwAV"],
                          input_size=80)


@pytest.fixture
def make_images():
    return _make_images


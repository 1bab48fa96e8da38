"""Small components for pipeline/ROI tests: tiny real regressors, stand-in stage 1 and stage 2.

The regressors are real :class:`~braindiff_app.regression.RidgeRegressor` objects fitted on a few random trials.
``decode_latents`` and ``DualGuidedImg2Img`` are stand-ins with the contract-7 signatures, deterministic per seed
(so batching independence and resumes are testable in milliseconds); ``install_stand_ins(monkeypatch)`` puts them
where the pipeline looks them up.
"""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import numpy as np

from braindiff_app.config import load_settings
from braindiff_app.pipeline import BrainDiffuserPipeline
from braindiff_app.regression import RidgeRegressor, save_regressor

N_VOXELS, N_LATENT, N_TOKENS_V, N_TOKENS_T, CLIP_DIM = 12, 192, 257, 77, 4
VDVAE_RES, IMAGE_SIZE = 8, 16


def fit_regressors(seed: int = 0, n_trials: int = 30) -> dict[str, RidgeRegressor]:
    """A subject's three regressors fitted on random betas (NSD file units) and random linear targets."""
    rng = np.random.default_rng(seed)
    fmri = (rng.normal(size=(n_trials, N_VOXELS)) * 300 + 50).astype(np.float32)
    regressors = {}
    for name, shape in [("vdvae", (N_LATENT,)), ("clip_vision", (N_TOKENS_V, CLIP_DIM)),
                        ("clip_text", (N_TOKENS_T, CLIP_DIM))]:
        mixing = rng.normal(size=(N_VOXELS, int(np.prod(shape)))).astype(np.float32) / 300
        targets = (fmri @ mixing + 0.1 * rng.normal(size=(n_trials, mixing.shape[1]))).astype(np.float32)
        regressors[name] = RidgeRegressor(alpha=1.0).fit(fmri, targets.reshape(n_trials, *shape))
    return regressors


def decode_latents(model, latents, n_layers=31, temperature=1.0, seeds=None, batch_size=32, progress=True,
                   **protocol_options):
    """Stand-in VDVAE decoder: latents shape the image, the seed adds its own noise."""
    noise = np.stack([np.random.default_rng(int(s)).normal(size=(VDVAE_RES, VDVAE_RES, 3)) for s in seeds])
    base = np.tanh(np.asarray(latents)[:, :VDVAE_RES * VDVAE_RES * 3].reshape(-1, VDVAE_RES, VDVAE_RES, 3))
    return np.clip(128 + 40 * base + 10 * noise, 0, 255).astype(np.uint8)


class StandInImg2Img:
    """Stand-in dual-guided img2img recording how it was called; can fail after N calls (a killed run)."""

    calls: list[dict] = []
    fail_after: int | None = None

    def __init__(self, vae, image_unet, text_unet, scheduler, image_size=None):
        self.image_size = IMAGE_SIZE

    def __call__(self, init_images, vision, text, strength=0.75, vision_weight=0.6, guidance_scale=7.5,
                 num_inference_steps=50, seeds=None, batch_size=8, vision_uncond=None, text_uncond=None,
                 noise_timestep="first"):
        StandInImg2Img.calls.append({"init": init_images is not None, "vision": vision is not None,
                                     "text": text is not None, "n": len(seeds)})
        if StandInImg2Img.fail_after is not None and len(StandInImg2Img.calls) > StandInImg2Img.fail_after:
            raise KeyboardInterrupt
        out = []
        for i, s in enumerate(seeds):
            image = np.random.default_rng(int(s)).normal(128, 20, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
            if init_images is not None:
                factor = IMAGE_SIZE // init_images.shape[1]
                image = 0.5 * image + 0.5 * init_images[i].repeat(factor, 0).repeat(factor, 1)
            if vision is not None:
                image = image + 5 * vision[i].mean()
            if text is not None:
                image = image - 5 * text[i].mean()
            out.append(np.clip(image, 0, 255).astype(np.uint8))
        return SimpleNamespace(images=np.stack(out))


def _unconditional(image_encoder, text_encoder, tokenizer, image="grey"):
    return np.zeros((1, N_TOKENS_V, CLIP_DIM), np.float32), np.zeros((1, N_TOKENS_T, CLIP_DIM), np.float32)


def install_stand_ins(monkeypatch) -> None:
    """Route the pipeline's stage 1 and stage 2 to the stand-ins for one test."""
    for module, name, value in [("vdvae", "decode_latents", decode_latents),
                                ("img2img", "DualGuidedImg2Img", StandInImg2Img),
                                ("clip_features", "unconditional_features", _unconditional)]:
        monkeypatch.setattr(importlib.import_module(f"braindiff_app.models.{module}"), name, value)
    monkeypatch.setattr(StandInImg2Img, "calls", [])
    monkeypatch.setattr(StandInImg2Img, "fail_after", None)


def stand_in_pipeline(regressors=None) -> BrainDiffuserPipeline:
    """A pipeline on the stand-in stages, with subject-0 regressors unless given."""
    return BrainDiffuserPipeline(fit_regressors() if regressors is None else regressors, vdvae=None, vae=None,
                                 image_unet=None, text_unet=None, image_encoder=None, text_encoder=None,
                                 tokenizer=None, scheduler=None, image_size=IMAGE_SIZE)


def random_fmri(n: int, seed: int = 0) -> np.ndarray:
    """Random betas in NSD file units, shape (n, N_VOXELS)."""
    return (np.random.default_rng(seed).normal(size=(n, N_VOXELS)) * 300).astype(np.float32)


def make_workspace(tmp_path, subjects=(1, 2)):
    """Prepared test sets and saved (tiny, real) regressors for two subjects."""
    settings = load_settings(home=tmp_path / "home", tier="demo", device="cpu")
    for s in subjects:
        prepared = settings.subject_dir("prepared", s)
        prepared.mkdir(parents=True)
        # Subject s saw the shared ids in its own order; subject 2 misses id 104.
        ids = [100, 101, 102, 103, 104] if s == 1 else [103, 102, 101, 100]
        np.save(prepared / "fmri_test.npy", random_fmri(len(ids), seed=s))
        images = np.random.default_rng(s).integers(0, 255, size=(len(ids), 20, 20, 3), dtype=np.uint8)
        np.save(prepared / "images_test.npy", images)
        (prepared / "captions_test.json").write_text(json.dumps([[f"image {i}"] for i in ids]))
        (prepared / "meta.json").write_text(json.dumps({"subject": s, "nsd_ids_test": ids}))
        folder = settings.subject_dir("regressors", s)
        for name, reg in fit_regressors(seed=10 * s).items():
            save_regressor(reg, folder / f"{name}.safetensors")
    return settings

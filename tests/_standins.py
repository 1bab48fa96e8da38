"""Stand-ins for the contract-7 pieces (regressors, decode_latents, DualGuidedImg2Img), for pipeline/ROI tests.

They follow the contract's signatures and are deterministic per seed, so the glue code can be tested before (and
independently of) the real models. Install them with the ``stand_ins`` fixture pattern:
``install_stand_ins(monkeypatch)``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import braindiff_app.models as models_pkg
from braindiff_app.pipeline import BrainDiffuserPipeline

N_VOXELS, N_LATENT, N_TOKENS_V, N_TOKENS_T, CLIP_DIM = 12, 192, 257, 77, 4


# -- stand-ins for the contract-7 pieces (regressor, decode_latents, DualGuidedImg2Img) ----------------------
class StandInRegressor:
    """Linear stand-in with the contract's predict(fmri, rescale); "transductive" mixes rows on purpose."""

    def __init__(self, shape, seed, alpha=1.0):
        self.shape, self.alpha = shape, alpha
        self.weights = np.random.default_rng(seed).normal(size=(N_VOXELS, int(np.prod(shape)))).astype(np.float32)

    def predict(self, fmri, rescale="none", preprocessed=False):
        out = np.asarray(fmri, dtype=np.float32) @ self.weights
        if rescale == "transductive":
            out = (out - out.mean(0)) / (out.std(0) + 1e-6)
        elif rescale == "norm":
            out = out / np.linalg.norm(out, axis=1, keepdims=True) * 10
        return out.reshape(len(out), *self.shape).astype(np.float32)


def stand_in_regressors(seed=0):
    return {"vdvae": StandInRegressor((N_LATENT,), seed),
            "clip_vision": StandInRegressor((N_TOKENS_V, CLIP_DIM), seed + 1),
            "clip_text": StandInRegressor((N_TOKENS_T, CLIP_DIM), seed + 2)}


def decode_latents(model, latents, n_layers=31, temperature=1.0, seeds=None, batch_size=32):
    noise = np.stack([np.random.default_rng(int(s)).normal(size=(8, 8, 3)) for s in seeds])
    return np.clip(128 + 40 * np.tanh(latents.reshape(-1, 8, 8, 3)) + 10 * noise, 0, 255).astype(np.uint8)


class StandInImg2Img:
    calls: list[dict] = []
    fail_after: int | None = None

    def __init__(self, vae, image_unet, text_unet, scheduler):
        self.size = 16

    def __call__(self, init_images, vision, text, seeds, vision_uncond, text_uncond, strength=0.75,
                 vision_weight=0.6, guidance_scale=7.5, num_inference_steps=50, batch_size=8):
        StandInImg2Img.calls.append({"init": init_images is not None, "vision": vision is not None,
                               "text": text is not None, "n": len(seeds)})
        if StandInImg2Img.fail_after is not None and len(StandInImg2Img.calls) > StandInImg2Img.fail_after:
            raise KeyboardInterrupt
        out = []
        for i, s in enumerate(seeds):
            image = np.random.default_rng(int(s)).normal(128, 20, size=(self.size, self.size, 3))
            if init_images is not None:
                image = 0.5 * image + 0.5 * init_images[i]
            if vision is not None:
                image = image + 5 * vision[i].mean()
            if text is not None:
                image = image - 5 * text[i].mean()
            out.append(np.clip(image, 0, 255).astype(np.uint8))
        return SimpleNamespace(images=np.stack(out))


def install_stand_ins(monkeypatch):
    monkeypatch.setattr(models_pkg, "decode_latents", decode_latents, raising=False)
    monkeypatch.setattr(models_pkg, "DualGuidedImg2Img", StandInImg2Img, raising=False)
    monkeypatch.setattr(models_pkg, "unconditional_features",
                        lambda *a: (np.zeros((1, N_TOKENS_V, CLIP_DIM), np.float32),
                                    np.zeros((1, N_TOKENS_T, CLIP_DIM), np.float32)), raising=False)
    monkeypatch.setattr(StandInImg2Img, "calls", [])
    monkeypatch.setattr(StandInImg2Img, "fail_after", None)


def stand_in_pipeline(regressors=None):
    return BrainDiffuserPipeline(stand_in_regressors() if regressors is None else regressors, vdvae=None, vae=None,
                                 image_unet=None, text_unet=None, image_encoder=None, text_encoder=None,
                                 tokenizer=None, scheduler=None, image_size=16)


def random_fmri(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, N_VOXELS)).astype(np.float32)

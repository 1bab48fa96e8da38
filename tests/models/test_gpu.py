"""GPU checks (``pytest -m gpu`` on a CUDA machine; deselected by default and skipped where no GPU is visible).

The same code paths as the CPU tests, moved to the device: results must agree with the CPU's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_torch_ridge_on_cuda_equals_numpy():
    from braindiff_app.regression import RidgeRegressor

    rng = np.random.default_rng(0)
    train, test = rng.normal(0, 300, (200, 120)).astype(np.float32), rng.normal(0, 300, (20, 120)).astype(np.float32)
    Y = rng.standard_normal((200, 3000)).astype(np.float32)
    cpu = RidgeRegressor(5e3, n_targets_batch=700).fit(train, Y).predict(test)
    gpu = RidgeRegressor(5e3, backend="torch", device="cuda", n_targets_batch=700).fit(train, Y).predict(test)
    assert np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu) < 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_img2img_on_cuda_agrees_with_cpu(vd_folder, dtype):
    from braindiff_app.models.clip_features import unconditional_features
    from braindiff_app.models.img2img import DualGuidedImg2Img
    from braindiff_app.models.versatile import load_versatile_diffusion

    def run(device, dtype):
        vd = load_versatile_diffusion(vd_folder, dtype=dtype)
        for part in (vd.vae, vd.image_unet, vd.text_unet, vd.image_encoder, vd.text_encoder):
            part.to(device)
        vision_uncond, text_uncond = unconditional_features(vd.image_encoder, vd.text_encoder, vd.tokenizer)
        rng = np.random.default_rng(0)
        pipe = DualGuidedImg2Img(vd.vae, vd.image_unet, vd.text_unet, vd.scheduler)
        return pipe(rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8),
                    rng.standard_normal((2, 257, 16)).astype(np.float32),
                    rng.standard_normal((2, 77, 16)).astype(np.float32),
                    vision_uncond=vision_uncond, text_uncond=text_uncond, num_inference_steps=4,
                    seeds=np.arange(2)).images

    cpu, gpu = run("cpu", torch.float32).astype(float), run("cuda", dtype).astype(float)
    assert gpu.shape == cpu.shape
    assert np.abs(gpu - cpu).mean() < (2 if dtype == torch.float32 else 8)  # grey levels of 255

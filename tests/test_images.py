"""The one image check and resize (braindiff_app.images), used by models/, evaluation/ and demo/."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import braindiff_app.evaluation as evaluation
import braindiff_app.models.vdvae as vdvae
from braindiff_app.images import check_images, resize_images


def _images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_bicubic_upsampling_for_stage_two():  # was models.vdvae.upsample_images
    images = _images(2, size=8)
    up = resize_images(images, 32)
    assert up.shape == (2, 32, 32, 3) and up.dtype == np.uint8
    assert abs(float(up.mean()) - float(images.mean())) < 3
    assert resize_images(images[:0], 32).shape == (0, 32, 32, 3)


@pytest.mark.parametrize("resample, pil_filter", [("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR),
                                                  ("nearest", Image.NEAREST)])
def test_pil_filters_match_pil(resample, pil_filter):
    images = _images(2, size=20, seed=1)
    out = resize_images(images, (12, 9), resample=resample)
    assert out.shape == (2, 12, 9, 3) and out.dtype == np.uint8
    for image, resized in zip(images, out, strict=True):
        np.testing.assert_array_equal(resized, np.asarray(Image.fromarray(image).resize((9, 12), pil_filter)))


def test_torch_bilinear_is_the_vdvae_input_resize():
    images = _images(3, size=40, seed=2)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    expected = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True,
                                               align_corners=False)
    expected = expected.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(resize_images(images, 16, resample="torch-bilinear"), expected)


def test_same_size_comes_back_unchanged():
    images = _images(2, size=16)
    for resample in ("bicubic", "torch-bilinear"):
        assert resize_images(images, (16, 16), resample=resample) is images


def test_one_definition():
    assert evaluation.resize_images is resize_images
    assert not hasattr(vdvae, "upsample_images") and vdvae.resize_images is resize_images


def test_errors():
    images = _images(2)
    with pytest.raises(ValueError, match="resample: expected one of"):
        resize_images(images, 8, resample="lanczos")
    with pytest.raises(ValueError, match="size: expected a positive number of pixels"):
        resize_images(images, 0)
    with pytest.raises(TypeError, match="images: expected uint8"):
        resize_images(images.astype(np.float32), 8)
    with pytest.raises(ValueError, match=r"images: expected shape \(n_images, height, width, 3\)"):
        check_images(images[:0], "images")
    with pytest.raises(TypeError, match="frames: expected a numpy array"):
        check_images([[0]], "frames")

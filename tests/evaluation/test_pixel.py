"""PixCorr and the two SSIM variants against hand-computed values and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from braindiff_app.evaluation import compute_metrics, pixcorr, resize_images, ssim, ssim_single, to_grayscale

SKIMAGE_ARGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}


def _gray_pair(seed: int = 0, shape=(30, 20)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    return a, (a + 0.5 * rng.random(shape)) / 1.5


def test_pixcorr_hand_computed():
    gt = np.zeros((1, 1, 2, 3), dtype=np.uint8)
    rec = np.zeros((1, 1, 2, 3), dtype=np.uint8)
    gt[0, 0, :, :] = [[0, 10, 20], [30, 40, 50]]
    rec[0, 0, :, :] = [[0, 10, 20], [30, 40, 60]]
    x = np.arange(0, 60, 10.0)
    y = np.array([0, 10, 20, 30, 40, 60.0])
    expected = ((x - x.mean()) @ (y - y.mean())) / np.sqrt(((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum())
    out = pixcorr(gt, rec)
    assert out.shape == (1,) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    np.testing.assert_allclose(pixcorr(gt, gt), [1.0], rtol=1e-6)
    np.testing.assert_allclose(pixcorr(gt, 255 - gt), [-1.0], rtol=1e-6)


def test_pixcorr_resizes_reconstructions_to_ground_truth_size(make_images):
    gt = make_images(3, 20, seed=1)
    rec = make_images(3, 40, seed=2)
    expected = [np.corrcoef(g.ravel(), r.ravel())[0, 1] for g, r in zip(gt, resize_images(rec, (20, 20)), strict=True)]
    np.testing.assert_allclose(pixcorr(gt, rec), expected, rtol=1e-5)
    # PIL bicubic, as the reference's Image.resize((425, 425)) default
    from PIL import Image

    np.testing.assert_array_equal(resize_images(rec, (20, 20))[0],
                                  np.asarray(Image.fromarray(rec[0]).resize((20, 20), Image.BICUBIC)))


def test_ssim_constant_images_hand_computed():
    # gray value of a constant RGB image equals the value (the weights sum to 1): 51 -> 0.2, 153 -> 0.6
    gt = np.full((1, 16, 16, 3), 51, dtype=np.uint8)
    rec = np.full((1, 16, 16, 3), 153, dtype=np.uint8)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)  # contrast/structure term is C2 / C2 = 1
    for variant in ("2d", "reference"):
        np.testing.assert_allclose(ssim(gt, rec, variant=variant), [expected], rtol=1e-6)
        np.testing.assert_allclose(ssim(gt, gt, variant=variant), [1.0], rtol=1e-6)


def test_ssim_2d_matches_scikit_image():
    a, b = _gray_pair()
    assert ssim_single(a, b, "2d") == pytest.approx(structural_similarity(a, b, **SKIMAGE_ARGS), abs=1e-12)


def test_ssim_reference_is_per_column_1d_ssim():
    a, b = _gray_pair()
    # scikit-image's per-channel SSIM with the columns as channels is what old multichannel=True did
    per_column = structural_similarity(a, b, channel_axis=-1, **SKIMAGE_ARGS)
    assert ssim_single(a, b, "reference") == pytest.approx(per_column, abs=1e-12)
    # and it is the mean of 1-D SSIMs down each column
    columns = [ssim_single(np.repeat(a[:, [j]], 11, axis=1), np.repeat(b[:, [j]], 11, axis=1), "reference")
               for j in range(a.shape[1])]
    assert ssim_single(a, b, "reference") == pytest.approx(np.mean(columns), abs=1e-12)
    # the documented difference: not the 2-D value
    assert abs(ssim_single(a, b, "reference") - ssim_single(a, b, "2d")) > 1e-3


def test_current_scikit_image_ignores_multichannel():
    a, b = _gray_pair()
    ignored = structural_similarity(a, b, multichannel=True, **SKIMAGE_ARGS)
    assert ignored == pytest.approx(ssim_single(a, b, "2d"), abs=1e-12)


def test_ssim_on_rgb_uses_scikit_grayscale(make_images):
    gt, rec = make_images(2, 24, seed=3), make_images(2, 24, seed=4)
    gray = to_grayscale(gt[0])
    np.testing.assert_allclose(gray, gt[0] @ np.array([0.2125, 0.7154, 0.0721]) / 255.0)
    expected = structural_similarity(to_grayscale(rec[1]), to_grayscale(gt[1]), **SKIMAGE_ARGS)
    assert ssim(gt, rec)[1] == pytest.approx(expected, abs=1e-6)


def test_pixel_metrics_without_backbones(make_images):
    gt, rec = make_images(3, 24, seed=5), make_images(3, 48, seed=6)
    out = compute_metrics(gt, rec)
    assert list(out) == ["PixCorr", "SSIM", "SSIM-ref"]
    assert all(v.shape == (3,) and v.dtype == np.float32 for v in out.values())
    np.testing.assert_allclose(out["SSIM-ref"], ssim(gt, rec, variant="reference"))


def test_errors(make_images):
    gt = make_images(2, 24, seed=0)
    with pytest.raises(TypeError, match="reconstructions: expected uint8"):
        compute_metrics(gt, gt.astype(np.float32))
    with pytest.raises(ValueError, match=r"ground_truth: expected shape \(n_images, height, width, 3\)"):
        compute_metrics(gt[0], gt)
    with pytest.raises(ValueError, match="expected one per ground-truth image"):
        compute_metrics(gt, gt[:1])
    with pytest.raises(ValueError, match="variant: expected one of"):
        ssim(gt, gt, variant="3d")
    with pytest.raises(ValueError, match=r"cannot compute \['AlexNet\(2\)'\]"):
        compute_metrics(gt, gt, metrics=["AlexNet(2)"])
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(gt, gt, metrics=["PSNR"])


def _column_ssim_loop(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """The "reference" variant written out: 1-D Gaussian SSIM down each column, border cropped, columns averaged."""
    from scipy.ndimage import gaussian_filter1d

    pad = int(3.5 * sigma + 0.5)
    c1, c2 = 0.01**2, 0.03**2
    means = []
    for j in range(a.shape[1]):
        x, y = a[:, j], b[:, j]

        def w(v):
            return gaussian_filter1d(v, sigma, truncate=3.5, mode="reflect")

        ux, uy = w(x), w(y)
        vx, vy, vxy = w(x * x) - ux * ux, w(y * y) - uy * uy, w(x * y) - ux * uy
        s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        means.append(s[pad:-pad].mean())
    return float(np.mean(means))


@pytest.mark.parametrize("shape", [(30, 20), (64, 64), (11, 5)])
def test_ssim_reference_matches_a_per_column_loop(shape):
    a, b = _gray_pair(seed=7, shape=shape)
    assert ssim_single(a, b, "reference") == pytest.approx(_column_ssim_loop(a, b), abs=1e-12)


def test_ssim_batch_matches_scikit_image_called_directly(make_images):
    gt, rec = make_images(3, 32, seed=8), make_images(3, 32, seed=9)
    for variant, extra in (("2d", {}), ("reference", {"channel_axis": -1})):
        expected = [structural_similarity(to_grayscale(r), to_grayscale(g), **SKIMAGE_ARGS, **extra)
                    for g, r in zip(gt, rec, strict=True)]
        np.testing.assert_array_equal(ssim(gt, rec, variant=variant), np.asarray(expected, dtype=np.float32))
    columns = [_column_ssim_loop(to_grayscale(r), to_grayscale(g)) for g, r in zip(gt, rec, strict=True)]
    np.testing.assert_allclose(ssim(gt, rec, variant="reference"), columns, rtol=1e-6)


def test_ssim_in_chunks_equals_scikit_image_image_by_image(make_images, monkeypatch):
    import braindiff_app.evaluation.pixel as pixel

    gt, rec = make_images(7, 24, seed=3), make_images(7, 24, seed=4)
    monkeypatch.setattr(pixel, "_SSIM_CHUNK_PIXELS", 3 * 24 * 24)  # stacks of 3, 3 and 1 images
    for variant, extra in (("2d", {}), ("reference", {"channel_axis": -1})):
        expected = [structural_similarity(to_grayscale(r), to_grayscale(g), **SKIMAGE_ARGS, **extra)
                    for g, r in zip(gt, rec, strict=True)]
        np.testing.assert_array_equal(ssim(gt, rec, variant=variant), np.asarray(expected, dtype=np.float32))
        assert len(set(np.round(expected, 6))) == 7  # seven different pairs, each in its place


@pytest.mark.parametrize("shape", [(64, 64), (97, 40), (200, 150)])
def test_ssim_single_equals_scikit_image_to_the_bit_in_float64(shape):
    a, b = _gray_pair(seed=11, shape=shape)
    assert ssim_single(a, b, "2d") == structural_similarity(a, b, **SKIMAGE_ARGS)
    assert ssim_single(a, b, "reference") == structural_similarity(a, b, **SKIMAGE_ARGS, channel_axis=-1)


def test_ssim_window_larger_than_image():
    a, b = _gray_pair(shape=(10, 30))
    with pytest.raises(ValueError, match="needs at least 11 pixels along each filtered axis"):
        ssim_single(a, b, "reference")
    with pytest.raises(ValueError, match="needs at least 11 pixels"):
        ssim_single(a.T, b.T, "2d")
    assert np.isfinite(ssim_single(a.T, b.T, "reference"))  # 30 rows, 10 columns: only rows are filtered

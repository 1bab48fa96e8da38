"""Backbones of the real architectures with random weights, loaded from files through the real loader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models as tvm

from braindiff_app import config
from braindiff_app.evaluation import (
    BACKBONES,
    Backbones,
    backbones_from_settings,
    compute_metrics,
    load_backbones,
    load_network,
)

NETWORK_METRICS = ["AlexNet(2)", "AlexNet(5)", "Inception", "EffNet-B", "SwAV"]


def test_file_names_are_torchvision_and_hub_names():
    expected = {
        "alexnet": tvm.AlexNet_Weights.IMAGENET1K_V1.url,
        "inception": tvm.Inception_V3_Weights.IMAGENET1K_V1.url,
        # The reference's efficientnet_b1(weights=True) means the legacy pretrained=True: IMAGENET1K_V1.
        "efficientnet": tvm.EfficientNet_B1_Weights.IMAGENET1K_V1.url,
    }
    for name, url in expected.items():
        assert BACKBONES[name].urls[0] == url
        assert url.endswith("/" + BACKBONES[name].files[0])
    assert BACKBONES["efficientnet"].urls[1] == tvm.EfficientNet_B1_Weights.IMAGENET1K_V2.url
    assert BACKBONES["swav"].files[0] == "swav_800ep_pretrain.pth.tar"


def test_all_backbones_load_from_files(backbones):
    assert backbones.metrics == tuple(NETWORK_METRICS) and not backbones.missing
    assert backbones.input_size == 80


def test_alexnet_layers_at_224(backbones, make_images):
    at_224 = Backbones({"alexnet": backbones.networks["alexnet"]})
    images = make_images(3, 48, seed=0)
    features = at_224.features(images)
    assert features["AlexNet(2)"].shape == (3, 192 * 27 * 27)  # features[4] at 224 px
    assert features["AlexNet(5)"].shape == (3, 256 * 13 * 13)  # features[11]
    out = compute_metrics(images, images.copy(), backbones=at_224)
    np.testing.assert_array_equal(out["AlexNet(2)"], 1.0)
    np.testing.assert_array_equal(out["AlexNet(5)"], 1.0)


def test_identical_images_identify_perfectly(backbones, make_images):
    images = make_images(3, 48, seed=0)
    features = backbones.features(images, ["Inception", "SwAV", "EffNet-B"])
    assert features["Inception"].shape == (3, 2048) and features["SwAV"].shape == (3, 2048)
    assert features["EffNet-B"].shape == (3, 1280)
    out = compute_metrics(images, images.copy(), backbones=backbones)
    assert list(out) == ["PixCorr", "SSIM", "SSIM-ref", *NETWORK_METRICS]
    for metric in ("AlexNet(2)", "AlexNet(5)", "Inception"):
        np.testing.assert_array_equal(out[metric], 1.0)
    np.testing.assert_allclose(out["EffNet-B"], 0.0, atol=1e-5)
    np.testing.assert_allclose(out["SwAV"], 0.0, atol=1e-5)


def test_mismatched_pairs_score_near_chance(backbones, make_images):
    gt = make_images(40, 32, seed=1)
    order = np.random.default_rng(0).permutation(40)
    rec = np.empty_like(gt)
    rec[order] = gt[np.roll(order, 1)]  # a random derangement: every reconstruction is another trial's image
    out = compute_metrics(gt, rec, metrics=["AlexNet(2)", "AlexNet(5)", "Inception", "SwAV"], backbones=backbones)
    for metric in ("AlexNet(2)", "AlexNet(5)", "Inception"):
        assert abs(out[metric].mean() - 0.5) < 0.12, (metric, out[metric].mean())
    assert out["SwAV"].min() > 1e-4


def test_features_match_direct_forward(backbones, make_images):
    model = backbones.networks["efficientnet"]
    images = make_images(2, 40, seed=2)
    backbones = Backbones({"efficientnet": model}, input_size=64)
    from PIL import Image

    x = np.stack([np.asarray(Image.fromarray(im).resize((64, 64), Image.BILINEAR)) for im in images]) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        direct = model.avgpool(model.features(torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2)))
    np.testing.assert_allclose(backbones.features(images)["EffNet-B"], direct.flatten(1).numpy(), atol=1e-5)


def test_missing_file_is_named_and_other_metrics_still_come_out(weights_dir, tmp_path, make_images):
    partial = tmp_path / "weights"
    partial.mkdir()
    for name in ("efficientnet",):
        shutil.copy(weights_dir / BACKBONES[name].files[0], partial)
    with pytest.warns(UserWarning, match=r"alexnet-owt-7be5be79\.pth: missing; .* AlexNet\(2\), AlexNet\(5\)"):
        backbones = load_backbones(partial, metrics=["PixCorr", "AlexNet(2)", "AlexNet(5)", "EffNet-B"])
    assert backbones.metrics == ("EffNet-B",)
    assert "alexnet-owt-7be5be79.pth" in backbones.missing["AlexNet(2)"]
    images = make_images(3, 24, seed=3)
    out = compute_metrics(images, images, backbones=backbones)
    assert list(out) == ["PixCorr", "SSIM", "SSIM-ref", "EffNet-B"]
    with pytest.raises(ValueError, match=r"alexnet-owt-7be5be79\.pth: missing"):
        compute_metrics(images, images, metrics=["AlexNet(5)"], backbones=backbones)
    with pytest.raises(FileNotFoundError, match=r"inception_v3_google-0cc3c7bd\.pth: missing.*Inception"):
        load_network("inception", partial)


def test_wrong_checkpoint_is_refused(weights_dir, tmp_path):
    effnet = weights_dir / BACKBONES["efficientnet"].files[0]
    shutil.copy(effnet, tmp_path / BACKBONES["swav"].files[0])
    shutil.copy(effnet, tmp_path / BACKBONES["inception"].files[0])
    with pytest.raises(ValueError, match="expected a ResNet-50 trunk"):
        load_network("swav", tmp_path)
    with pytest.raises(ValueError, match="does not fit the torchvision Inception-v3 architecture"):
        load_network("inception", tmp_path)


def test_demo_clip_identification(clip_dir, make_images):
    backbones = load_backbones(Path("/nonexistent"), metrics=["demo-CLIP"], clip_dir=clip_dir, clip_metric="demo-CLIP")
    assert backbones.metrics == ("demo-CLIP", "demo-CLIP 4-way")  # the quiz's odds read the same features
    images = make_images(4, 40, seed=4)
    features = backbones.features(images)
    assert features["demo-CLIP"].shape == (4, 16)
    assert features["demo-CLIP 4-way"] is features["demo-CLIP"]  # the encoder ran once
    out = compute_metrics(images, images, backbones=backbones)
    assert list(out) == ["PixCorr", "SSIM", "SSIM-ref", "demo-CLIP", "demo-CLIP 4-way"]
    np.testing.assert_array_equal(out["demo-CLIP"], 1.0)
    np.testing.assert_array_equal(out["demo-CLIP 4-way"], 1.0)
    three = compute_metrics(images[:3], images[:3], backbones=backbones)  # 4-way needs four images: left out
    assert list(three) == ["PixCorr", "SSIM", "SSIM-ref", "demo-CLIP"]


def test_clip_encoder_choice(clip_dir, tmp_path, monkeypatch):
    shutil.copytree(clip_dir, tmp_path / "demo" / "vd" / "image_encoder")
    monkeypatch.setattr(config.Settings, "demo_models_dir", property(lambda self: tmp_path / "demo"))
    settings = config.load_settings(home=tmp_path, eval_weights=tmp_path / "none")
    assert settings.eval_clip_dir == (tmp_path / "demo" / "vd" / "image_encoder", "demo-CLIP")
    real = config.load_settings(home=tmp_path, vd_dir=clip_dir.parent)
    assert real.eval_clip_dir == (clip_dir, "CLIP")
    with pytest.warns(UserWarning, match="EffNet-B"):
        backbones = backbones_from_settings(settings, ["CLIP", "EffNet-B"])
    assert backbones.metrics == ("demo-CLIP", "demo-CLIP 4-way")


def test_doctor_lists_each_backbone_file(weights_dir, tmp_path, clip_dir):
    from braindiff_app.doctor import diagnose

    features = {f.name: f for f in diagnose(config.load_settings(home=tmp_path, eval_weights=weights_dir,
                                                                 vd_dir=clip_dir.parent))}
    real = features["evaluation: AlexNet(2), AlexNet(5), Inception, CLIP, EffNet-B, SwAV"]
    names = [a.path.name for a in real.assets]
    assert names == [spec.files[0] for spec in BACKBONES.values()] + ["config.json"]
    assert real.usable
    empty = {f.name: f for f in diagnose(config.load_settings(home=tmp_path, eval_weights=tmp_path / "none"))}
    assert not empty["evaluation: AlexNet(2), AlexNet(5), Inception, CLIP, EffNet-B, SwAV"].usable
    assert empty["evaluation: PixCorr, SSIM, SSIM-ref"].usable


def test_download_fetches_only_missing_files(tmp_path, monkeypatch):
    import torch.hub

    from braindiff_app.evaluation import download_weights

    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, Path(dst).name, hash_prefix))
        Path(dst).write_bytes(b"x")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"x")
    fetched = download_weights(tmp_path, ["alexnet", "inception", "swav"], progress=False)
    assert [p.name for p in fetched] == ["inception_v3_google-0cc3c7bd.pth", "swav_800ep_pretrain.pth.tar"]
    assert calls == [(BACKBONES["inception"].urls[0], "inception_v3_google-0cc3c7bd.pth", "0cc3c7bd"),
                     (BACKBONES["swav"].urls[0], "swav_800ep_pretrain.pth.tar", None)]

"""The pipeline end to end on tiny real components (VDVAE, Versatile Diffusion classes) loaded by load_pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from braindiff_app.config import Settings, load_settings
from braindiff_app.pipeline import load_pipeline, trial_seeds
from braindiff_app.regression import RidgeRegressor, save_regressor

N_VOXELS = 10
CAPTIONS = ["a red ball on the grass", "a blue house under the sky", "a smiling face", "a green tree"] * 3


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory):
    """A demo models folder with a tiny VDVAE and a tiny Versatile Diffusion, saved by the real writers."""
    from braindiff_app.demo.vd import build_components, train_clip_tokenizer
    from braindiff_app.models.vdvae import VDVAE, VDVAEConfig, save_vdvae
    from braindiff_app.models.versatile import save_versatile_diffusion

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vdvae = VDVAE(VDVAEConfig(name="tiny16", image_size=16, width=16, zdim=4, num_mixtures=2, n_latent_layers=3,
                              enc_blocks="16x1,16d2,8x1,8d2,4x1,4d4,1x1", dec_blocks="1x1,4m1,4x1,8m4,8x1,16m8"))
    with torch.no_grad():  # randomise the zero-initialised heads so that latents and seeds matter
        for p in vdvae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_vdvae(vdvae, root / "vdvae")
    save_versatile_diffusion(build_components(train_clip_tokenizer(CAPTIONS, vocab_size=600), "tiny"), root / "vd")
    return root, vdvae.config.n_latent()


@pytest.fixture
def settings(tmp_path, monkeypatch, demo_models):
    root, n_latent = demo_models
    monkeypatch.setattr(Settings, "demo_models_dir", property(lambda self: root))
    settings = load_settings(home=tmp_path, tier="demo", device="cpu", dtype="float32")
    rng = np.random.default_rng(0)
    fmri = (rng.normal(size=(20, N_VOXELS)) * 300).astype(np.float32)
    for name, shape in [("vdvae", (n_latent,)), ("clip_vision", (257, 16)), ("clip_text", (77, 16))]:
        targets = rng.normal(size=(20, *shape)).astype(np.float32)
        reg = RidgeRegressor(alpha=10.0).fit(fmri, targets)
        save_regressor(reg, settings.subject_dir("regressors", 1) / f"{name}.safetensors")
    return settings


def test_real_components_shapes_ablations_and_batching(settings):
    torch.set_num_threads(1)
    pipe = load_pipeline(settings, 1)
    assert pipe.image_size == 16 and pipe.vdvae_layers == 3
    fmri = (np.random.default_rng(1).normal(size=(3, N_VOXELS)) * 300).astype(np.float32)
    seeds = trial_seeds([7, 8, 9])
    params = dict(num_inference_steps=4, rescale="train", ablations=["no_vdvae", "no_text", "no_vision"])
    out = pipe(fmri, seeds=seeds, batch_size=3, **params)
    assert out.final.shape == (3, 16, 16, 3) and out.final.dtype == np.uint8
    assert out.vdvae.shape == (3, 16, 16, 3)
    assert out.features["clip_vision"].shape == (3, 257, 16)
    assert set(out.ablations) == {"no_vdvae", "no_text", "no_vision"}
    for kind, images in out.ablations.items():
        assert images.shape == (3, 16, 16, 3) and not np.array_equal(images, out.final), kind
    one = pipe(fmri[[2]], seeds=seeds[[2]], batch_size=1, **params)  # the same trial alone
    np.testing.assert_array_equal(one.vdvae[0], out.vdvae[2])
    np.testing.assert_allclose(one.final[0].astype(int), out.final[2].astype(int), atol=1)
    other = pipe(fmri[[2]], seeds=trial_seeds([9], seed=1), batch_size=1, **params)
    assert not np.array_equal(other.final[0], out.final[2])


def test_roi_recipe_on_real_components_recreates_its_image(settings, tmp_path):
    from braindiff_app.data.nsd_layout import write_roi
    from braindiff_app.roi import Recipe, load_roi_models, parse_regions

    torch.set_num_threads(1)
    labels = np.arange(N_VOXELS).reshape(5, 2, 1)
    write_roi(settings.nsd_dir, 1, "nsdgeneral", np.ones((5, 2, 1), np.int16))
    write_roi(settings.nsd_dir, 1, "prf-visualrois", np.where(labels < 3, 1, np.where(labels < 5, 3, 0)))
    for stem in ("floc-faces", "floc-words", "floc-places", "floc-bodies", "prf-eccrois"):
        write_roi(settings.nsd_dir, 1, stem, np.where(labels >= 7, 1, 0))
    models = load_roi_models(settings)
    assert models.subjects == ["1"] and "hV4" in models.atlases["1"].absent
    recipe = Recipe(subject="1", regions=parse_regions("V1:+1,faces:+1,V2:-1"), seed=5,
                    settings={"num_inference_steps": 4})
    first = models.generate(recipe)
    assert first.final.shape == (1, 16, 16, 3) and first.vdvae.shape == (1, 16, 16, 3)
    again = models.generate(Recipe.load(recipe.save(tmp_path / "recipe.json")))
    np.testing.assert_array_equal(again.final, first.final)
    other = models.generate(Recipe(subject="1", regions={"V2": 1.0}, seed=5, settings={"num_inference_steps": 4}))
    assert not np.array_equal(other.final, first.final)


def _fmri(n=2):
    return (np.random.default_rng(1).normal(size=(n, N_VOXELS)) * 300).astype(np.float32)


def test_image_size_is_honoured(settings):
    """BrainDiffuserPipeline(image_size=...) sets the output side (it used to be stored and ignored)."""
    from braindiff_app.pipeline import BrainDiffuserPipeline

    torch.set_num_threads(1)
    pipe = load_pipeline(settings, 1)
    parts = {name: getattr(pipe, name) for name in ("vdvae", "vae", "image_unet", "text_unet", "image_encoder",
                                                    "text_encoder", "tokenizer", "scheduler")}
    big = BrainDiffuserPipeline(pipe.regressors, image_size=32, **parts)
    out = big(_fmri(), seeds=trial_seeds([1, 2]), num_inference_steps=2, rescale="train")
    assert big.image_size == 32 and out.final.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="image_size: expected a positive multiple"):
        BrainDiffuserPipeline(pipe.regressors, image_size=7, **parts)(
            _fmri(), seeds=trial_seeds([1, 2]), num_inference_steps=2, rescale="train")


def test_sample_size_null_loads_and_runs(settings, demo_models, tmp_path):
    """Versatile Diffusion's image UNet config had "sample_size": null before a later fix."""
    import json
    import shutil

    from braindiff_app.pipeline import BrainDiffuserPipeline

    root, _ = demo_models
    copy = tmp_path / "vd-null"
    shutil.copytree(root / "vd", copy)
    config_path = copy / "image_unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["sample_size"] = None
    config_path.write_text(json.dumps(config))
    from braindiff_app.models.versatile import load_versatile_diffusion

    vd = load_versatile_diffusion(copy)
    pipe = load_pipeline(settings, 1)
    parts = dict(vdvae=pipe.vdvae, vae=vd.vae, image_unet=vd.image_unet, text_unet=vd.text_unet,
                 image_encoder=vd.image_encoder, text_encoder=vd.text_encoder, tokenizer=vd.tokenizer,
                 scheduler=vd.scheduler)
    with pytest.warns(UserWarning, match="sample_size is null; using 512 px"):
        assert BrainDiffuserPipeline(pipe.regressors, **parts).image_size == 512
    out = BrainDiffuserPipeline(pipe.regressors, image_size=16, **parts)(
        _fmri(), seeds=trial_seeds([1, 2]), num_inference_steps=2, rescale="train")
    assert out.final.shape == (2, 16, 16, 3)


def test_reference_protocol_runs_end_to_end_and_differs(settings):
    torch.set_num_threads(1)
    ours, ref = load_pipeline(settings, 1), load_pipeline(settings, 1, protocol="reference")
    assert (ours.protocol.name, ref.protocol.name) == ("braindiff", "reference")
    kw = dict(seeds=trial_seeds([1, 2]), num_inference_steps=4, rescale="train")
    a, b = ours(_fmri(), **kw), ref(_fmri(), **kw)
    assert a.final.shape == b.final.shape == (2, 16, 16, 3)
    assert not np.array_equal(a.vdvae, b.vdvae) and not np.array_equal(a.final, b.final)

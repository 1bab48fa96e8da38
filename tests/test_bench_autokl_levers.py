"""bench/autokl_levers.py: its AutoKL variants and the round trip it scores."""

import numpy as np
import pytest
import torch

from tests._bench import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("autokl_levers")


def test_a_fresh_autokl_has_the_committed_shape_but_the_asked_latent(bench):
    from braindiff_app.config import DEMO_ASSETS_DIR
    from braindiff_app.models.versatile import load_versatile_diffusion

    committed = load_versatile_diffusion(DEMO_ASSETS_DIR / "models" / "vd", dtype=torch.float32).vae
    for channels in (4, 8):
        fresh = bench.fresh_autokl(committed, channels)
        assert fresh.config.latent_channels == channels and fresh.training
        assert fresh.config.block_out_channels == committed.config.block_out_channels
    a, b = bench.fresh_autokl(committed, 4), bench.fresh_autokl(committed, 4, seed=1)
    assert not torch.equal(a.encoder.conv_in.weight, b.encoder.conv_in.weight)  # seeded


def test_the_committed_round_trip_returns_each_scene(bench):
    from braindiff_app.cli.train_diffusion import EVAL_START, WORLD_SEED
    from braindiff_app.config import DEMO_ASSETS_DIR
    from braindiff_app.demo.stimuli import render_scenes
    from braindiff_app.models.versatile import load_versatile_diffusion

    vae = load_versatile_diffusion(DEMO_ASSETS_DIR / "models" / "vd", dtype=torch.float32).vae
    scenes, _, _ = render_scenes(6, seed=WORLD_SEED, size=64, start=EVAL_START)
    trips = bench.round_trip(vae, scenes, batch_size=4)  # two batches
    assert trips.shape == scenes.shape and trips.dtype == np.uint8
    error = np.abs(trips.astype(float) - scenes).mean(axis=(1, 2, 3))
    other = np.abs(trips.astype(float) - np.roll(scenes, 1, axis=0)).mean(axis=(1, 2, 3))
    assert (error < 0.5 * other).all()  # each round trip is its own scene, not another one


def test_a_saved_stage_is_what_train_diffusion_resumes_from(bench, tmp_path):
    from braindiff_app.config import DEMO_ASSETS_DIR
    from braindiff_app.demo.vd import build_components
    from braindiff_app.models.versatile import load_versatile_diffusion

    committed = load_versatile_diffusion(DEMO_ASSETS_DIR / "models" / "vd", dtype=torch.float32)
    fresh = bench.fresh_autokl(committed.vae, 4, seed=3)
    bench.save_stage(fresh, [0.5, 0.4], tmp_path / "work")
    state = torch.load(tmp_path / "work" / "vae.pt", weights_only=True)  # as train_demo_vd loads a stage
    assert state["losses"] == [0.5, 0.4] and len(state["weights"]) == 1
    target = build_components(committed.tokenizer, "demo").vae  # the AutoKL train-diffusion builds
    target.load_state_dict(state["weights"][0])  # strict: every tensor fits
    assert torch.equal(target.encoder.conv_in.weight, fresh.encoder.conv_in.weight)

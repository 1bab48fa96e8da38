"""Stage2Settings: tier defaults, checks, JSON, and that the pipeline, CLI, recipes and bundles take it."""

from __future__ import annotations

import inspect
import json

import pytest

from braindiff_app.bundles import Manifest
from braindiff_app.config import PRECOMPUTED_DIR
from braindiff_app.pipeline import BrainDiffuserPipeline
from braindiff_app.stage2 import STAGE2_FIELDS, TIER_DIFFUSION_STEPS, Stage2Settings


def test_defaults_per_tier():
    assert Stage2Settings() == Stage2Settings(strength=0.75, vision_weight=0.6, guidance_scale=7.5,
                                              num_inference_steps=50)
    assert Stage2Settings.for_tier("demo") == Stage2Settings(num_inference_steps=20)
    assert Stage2Settings.for_tier("real") == Stage2Settings(num_inference_steps=50)
    assert TIER_DIFFUSION_STEPS == {"demo": 20, "real": 50}
    with pytest.raises(ValueError, match="tier: expected one of"):
        Stage2Settings.for_tier("huge")


@pytest.mark.parametrize("field, value, error, match", [
    ("strength", 1.5, ValueError, r"strength: expected a value in \[0, 1\], got 1.5"),
    ("strength", -0.1, ValueError, r"strength: expected a value in \[0, 1\]"),
    ("strength", float("nan"), ValueError, r"strength: expected a value in \[0, 1\]"),
    ("strength", "high", TypeError, "strength: expected a number, got 'high'"),
    ("vision_weight", 1.2, ValueError, r"vision_weight: expected a value in \[0, 1\]"),
    ("vision_weight", None, TypeError, "vision_weight: expected a number"),
    ("guidance_scale", 0.5, ValueError, "guidance_scale: expected a value >= 1"),
    ("guidance_scale", float("inf"), ValueError, "guidance_scale: expected a value >= 1"),
    ("guidance_scale", True, TypeError, "guidance_scale: expected a number"),
    ("num_inference_steps", 0, ValueError, "num_inference_steps: expected a positive count, got 0"),
    ("num_inference_steps", 2.5, TypeError, "num_inference_steps: expected a whole number"),
    ("num_inference_steps", "20", TypeError, "num_inference_steps: expected a whole number"),
])
def test_each_bad_value_is_rejected_naming_the_field(field, value, error, match):
    with pytest.raises(error, match=match):
        Stage2Settings(**{field: value})
    with pytest.raises(ValueError, match=f"settings.json: {match}"):  # from JSON: one kind of error, with the file
        Stage2Settings.from_json({field: value}, "settings.json")


def test_numbers_are_kept_as_the_same_values():
    import numpy as np

    settings = Stage2Settings(strength=1, num_inference_steps=np.int64(20), guidance_scale=np.float32(7.5))
    assert settings.to_json() == {"strength": 1.0, "vision_weight": 0.6, "guidance_scale": 7.5,
                                  "num_inference_steps": 20}
    assert type(settings.num_inference_steps) is int and type(settings.strength) is float


def test_json_round_trip_and_partial_data():
    settings = Stage2Settings(strength=0.5, vision_weight=0.25, guidance_scale=3.0, num_inference_steps=7)
    data = json.loads(json.dumps(settings.to_json()))
    assert list(data) == list(STAGE2_FIELDS)
    assert Stage2Settings.from_json(data) == settings
    assert Stage2Settings.from_json({}) == Stage2Settings()
    assert Stage2Settings.from_json({"strength": 0.5}, defaults=Stage2Settings.for_tier("demo")) == Stage2Settings(
        strength=0.5, num_inference_steps=20)
    with pytest.raises(ValueError, match=r"x.json: unknown stage-2 setting\(s\) \['guidance'\]"):
        Stage2Settings.from_json({"guidance": 7.5}, "x.json")
    with pytest.raises(ValueError, match="x.json: expected a mapping"):
        Stage2Settings.from_json([0.75], "x.json")
    assert settings.with_overrides(strength=None, guidance_scale=2) == Stage2Settings(
        strength=0.5, vision_weight=0.25, guidance_scale=2.0, num_inference_steps=7)
    assert Stage2Settings().mixing == "0.6 vision / 0.4 text"


def test_pipeline_defaults_and_checks_come_from_it():
    parameters = inspect.signature(BrainDiffuserPipeline.__call__).parameters
    assert {name: parameters[name].default for name in STAGE2_FIELDS} == Stage2Settings().to_json()
    from braindiff_app.models.img2img import DualGuidedImg2Img

    parameters = inspect.signature(DualGuidedImg2Img.__call__).parameters
    assert {name: parameters[name].default for name in STAGE2_FIELDS} == Stage2Settings().to_json()
    pipe = BrainDiffuserPipeline.__new__(BrainDiffuserPipeline)
    pipe.regressors = {}
    features = {name: [[0.0]] for name in ("vdvae", "clip_vision", "clip_text")}
    with pytest.raises(ValueError, match="guidance_scale: expected a value >= 1"):
        pipe.check_inputs(None, features, [0], "none", (), **{**Stage2Settings().to_json(), "guidance_scale": 0.9})
    assert pipe.check_inputs(None, features, [0], "none", (), **Stage2Settings().to_json()) == 1


@pytest.mark.parametrize("tier", ["demo", "real"])
def test_cli_defaults_and_help_come_from_it(tier):
    from braindiff_app.cli import build_parser
    from braindiff_app.cli._stage2 import stage2_from_args

    parser = build_parser()
    args = parser.parse_args(["reconstruct", "--subject", "1"])
    assert stage2_from_args(args, tier) == Stage2Settings.for_tier(tier)
    args = parser.parse_args(["roi", "--regions", "V1"])
    assert stage2_from_args(args, tier) == Stage2Settings.for_tier(tier)
    args = parser.parse_args(["reconstruct", "--subject", "1", "--strength", "0.5", "--steps", "9",
                              "--vision-weight", "0.3", "--guidance-scale", "2"])
    assert stage2_from_args(args, tier) == Stage2Settings(0.5, 0.3, 2.0, 9)


def test_cli_help_prints_the_defaults(capsys):
    from braindiff_app.cli import main

    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    demo, real = Stage2Settings.for_tier("demo"), Stage2Settings.for_tier("real")
    assert f"(default {demo.strength:g})" in text and f"(default {demo.vision_weight:g})" in text
    assert f"(default {demo.guidance_scale:g})" in text
    assert (f"(default: {demo.num_inference_steps} on the demo tier, {real.num_inference_steps} on the real tier)"
            in text)


def test_committed_manifests_hold_the_tier_defaults():
    """A demo `braindiff reconstruct` with no flags writes the committed bundles' stage-2 settings."""
    paths = sorted(PRECOMPUTED_DIR.glob("demo-*/manifest.json"))
    assert paths
    for path in paths:
        data = json.loads(path.read_text())
        manifest = Manifest.from_json(data, path)
        expected = Stage2Settings.for_tier(manifest.tier)
        assert manifest.stage2 == expected
        written = {**expected.to_json(), "mixing": expected.mixing}
        assert list(data["settings"])[:5] == list(written)
        assert {k: data["settings"][k] for k in written} == written
        # Same JSON types too (an int stays an int, a float a float).
        assert {k: type(data["settings"][k]) for k in written} == {k: type(v) for k, v in written.items()}

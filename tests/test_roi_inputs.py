"""Issue 16: ROI inputs (region weights, recipes) give a result or a clear ValueError/TypeError, never a black image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braindiff_app.data.atlas import ALL_REGIONS
from braindiff_app.roi import MAX_WEIGHT, RECIPE_FORMAT, Recipe, parse_regions, synthetic_pattern
from tests.test_roi import _atlas

GOOD = {"format": RECIPE_FORMAT, "version": 1, "subject": "1", "regions": {"V1": 1.0}, "seed": 0}


@pytest.mark.parametrize("text, match", [
    ("V1:+1e308", r"weight of 'V1' must lie in \[-100, \+100\]"),
    ("V1:101", r"must lie in \[-100, \+100\]"),
    ("V1:-1e39", r"must lie in"),
    ("V1:nan", "must be a finite number"),
    ("V1:inf", "must be a finite number"),
    ("V1:1e999", "must be a finite number"),
])
def test_parse_regions_refuses_non_finite_or_huge_weights(text, match):
    with pytest.raises(ValueError, match=match):
        parse_regions(text)
    assert parse_regions(f"V1:{MAX_WEIGHT:g}") == {"V1": MAX_WEIGHT}


@pytest.mark.parametrize("regions, painted_weight, match", [
    ({"V1": float("nan")}, 1.0, r"regions\['V1'\]: expected a finite weight"),
    ({"V1": 1e308}, 1.0, r"regions\['V1'\]: expected a finite weight in \[-100, \+100\]"),
    ({"V1": 1.0}, float("nan"), "painted_weight: expected a finite weight"),
    ({"V1": 1.0}, float("-inf"), "painted_weight"),
])
def test_synthetic_pattern_refuses_non_finite_weights(regions, painted_weight, match):
    with pytest.raises(ValueError, match=match):
        synthetic_pattern(_atlas(), regions, painted=[4], painted_weight=painted_weight)


@pytest.mark.parametrize("change, error, match", [
    ({"subject": None}, ValueError, "subject: missing"),
    ({"subject": [1]}, ValueError, "subject: expected a subject number"),
    ({"subject": ""}, ValueError, "subject: expected a subject number"),
    ({"regions": ["V1", 1]}, ValueError, "regions: expected a mapping of region name to weight"),
    ({"regions": "V1:+1"}, ValueError, "regions: expected a mapping"),
    ({"regions": {"V1": "1"}}, ValueError, r"regions\['V1'\]: expected a number"),
    ({"regions": {"V1": 1e308}}, ValueError, r"regions\['V1'\]: expected a finite weight in \[-100, \+100\]"),
    ({"regions": {"V1": [1]}}, ValueError, r"regions\['V1'\]: expected a number"),
    ({"regions": {"V9": 1}}, ValueError, "regions: unknown region 'V9'"),
    ({"settings": [["strength", 0.5]]}, ValueError, "settings: expected a mapping"),
    ({"settings": {"guidance_scale": float("nan")}}, ValueError, "guidance_scale: expected a value >= 1"),
    ({"settings": {"guidance_scale": float("inf")}}, ValueError, "guidance_scale"),
    ({"settings": {"num_inference_steps": [50]}}, ValueError, "num_inference_steps"),
    ({"settings": {"rescale": ["effect"]}}, ValueError, "settings.rescale"),
    ({"seed": 2**63}, ValueError, r"seed: expected an integer in \[0, 2\*\*63 - 1\], got 9223372036854775808"),
    ({"seed": 2**64}, ValueError, "seed: expected an integer"),
    ({"seed": -1}, ValueError, "seed: expected an integer"),
    ({"seed": 1.5}, ValueError, "seed: expected an integer"),
    ({"seed": "7"}, ValueError, "seed: expected a non-negative integer"),
    ({"seed": True}, ValueError, "seed"),
    ({"painted": "123"}, ValueError, "painted: expected a list of voxel indices"),
    ({"painted": [1.5]}, ValueError, "painted: expected non-negative integer voxel indices"),
    ({"painted": [-1]}, ValueError, "painted: expected non-negative integer"),
    ({"painted_weight": float("nan")}, ValueError, "painted_weight: expected a finite weight"),
    ({"painted_weight": 1e308}, ValueError, "painted_weight"),
])
def test_bad_recipe_fields_are_named(change, error, match):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(error, match=f"^recipe: (settings: )?{match}"):
        Recipe.from_json(data)


def test_seed_at_the_limit_is_kept_not_wrapped():
    assert Recipe.from_json({**GOOD, "seed": 2**63 - 1}).seed == 2**63 - 1


def test_recipe_files_too_deep_too_large_or_binary_name_the_file(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"format": "braindiff-roi-recipe", "version": 1, "subject": "1", "regions": '
                    + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(ValueError, match="deep.json: .*(nested too deeply|regions)"):
        Recipe.load(deep)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (5 * 2**20))
    with pytest.raises(ValueError, match=r"big.json: \d+ bytes, more than a recipe's"):
        Recipe.load(big)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="bin.json: not a text file"):
        Recipe.load(binary)
    with pytest.raises(ValueError, match="deep2.json: .*nested too deeply"):
        Recipe.from_json({**GOOD, "regions": _nested(10000)}, "deep2.json")


def _nested(depth):
    value = {}
    for _ in range(depth):
        value = {"V1": value}
    return value


# -- property-based: any input gives a result or a clear ValueError/TypeError -------------------------------------
_NAMES = st.sampled_from([*ALL_REGIONS, "v1", "V4", "V9", "", "+", "-", ":", "ecc4+"])
_NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.sampled_from(["1", "x", ""]))


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(st.tuples(st.sampled_from(["", "+", "-"]), _NAMES,
                                                          st.one_of(st.none(), _NUMBERS.map(str))),
                                                max_size=5).map(lambda items: ", ".join(
                                                    s + n + ("" if w is None else f":{w}") for s, n, w in items)),
                 st.integers(), st.none(), st.lists(st.integers(), max_size=2)))
def test_parse_regions_never_fails_otherwise(text):
    try:
        weights = parse_regions(text)
    except (ValueError, TypeError):
        return
    assert all(np.isfinite(w) and abs(w) <= MAX_WEIGHT for w in weights.values())
    assert set(weights) <= set(ALL_REGIONS)


_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
                     lambda children: st.one_of(st.lists(children, max_size=3),
                                                st.dictionaries(st.text(max_size=8), children, max_size=3)),
                     max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "subject": st.one_of(st.sampled_from(["1", "2", "average", 1]), _JSON),
    "regions": st.one_of(st.dictionaries(_NAMES, st.one_of(_NUMBERS, _JSON), max_size=3), _JSON),
    "painted": st.one_of(st.lists(st.integers(), max_size=4), _JSON),
    "painted_weight": st.one_of(_NUMBERS, _JSON),
    "seed": st.one_of(st.integers(), st.floats(), _JSON),
    "settings": st.one_of(st.dictionaries(st.sampled_from(["strength", "vision_weight", "guidance_scale",
                                                           "num_inference_steps", "rescale", "tier", "x"]),
                                          st.one_of(_NUMBERS, _JSON), max_size=3), _JSON),
}), st.sampled_from([{}, {"format": RECIPE_FORMAT, "version": 1}, {"format": RECIPE_FORMAT}]))
def test_recipe_from_json_never_fails_otherwise(fields, header):
    data = {**header, **fields}
    try:
        recipe = Recipe.from_json(data)
    except (ValueError, TypeError):
        return
    assert 0 <= recipe.seed < 2**63
    assert all(np.isfinite(w) and abs(w) <= MAX_WEIGHT for w in recipe.regions.values())
    assert Recipe.from_json(json.loads(json.dumps(recipe.to_json()))) == recipe


def test_a_recipe_records_its_protocol_and_its_id_follows_a_non_default_one():
    """Every recipe names its protocol (replays re-create the image under it); the default one leaves the content
    id as it was before protocols were recorded (the sha256 of the JSON without it, computed here)."""
    import hashlib

    from braindiff_app.roi import Recipe

    plain = Recipe(subject="1", regions={"V1": 1.0}, settings={"tier": "demo"})
    same = Recipe(subject="1", regions={"V1": 1.0}, settings={"tier": "demo", "protocol": "braindiff"})
    ref = Recipe(subject="1", regions={"V1": 1.0}, settings={"tier": "demo", "protocol": "reference"})
    assert plain.to_json()["settings"]["protocol"] == "braindiff" and plain.content_id == same.content_id
    before = plain.to_json()
    before["settings"] = {k: v for k, v in before["settings"].items() if k != "protocol"}
    digest = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert plain.content_id == digest
    assert ref.settings["protocol"] == "reference" and ref.content_id != plain.content_id
    assert Recipe.from_json(ref.to_json()) == ref
    with pytest.raises(ValueError, match="settings.protocol: expected one of"):
        Recipe(subject="1", regions={"V1": 1.0}, settings={"protocol": "paper"})


def test_the_studio_refuses_a_reference_protocol_recipe_with_the_command_to_use(tmp_path):
    from braindiff_app.config import load_settings
    from braindiff_app.roi import Recipe
    from braindiff_app.ui.roi import ROIHandlers
    from braindiff_app.ui.state import AppState

    handlers = ROIHandlers(AppState(load_settings(home=tmp_path, tier="demo")))
    recipe = Recipe(subject="1", regions={"V1": 1.0}, settings={"tier": "demo", "protocol": "reference"})
    with pytest.raises(ValueError, match=r"settings.protocol: the studio runs the braindiff protocol.*braindiff roi "
                       "--recipe"):
        handlers.generate(recipe)

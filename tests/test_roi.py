"""ROI patterns, painting, recipes and grids (stand-in stages)."""

from __future__ import annotations

import numpy as np
import pytest

from braindiff_app.config import load_settings
from braindiff_app.data.atlas import ALL_REGIONS, ROIAtlas
from braindiff_app.regression import predict_linear, rescale_predictions
from braindiff_app.roi import (
    Recipe,
    ROIModels,
    flatmap_voxel_lookup,
    format_regions,
    load_subject_flatmap,
    painted_voxels,
    paper_figure,
    parse_regions,
    predict_pattern_features,
    synthetic_pattern,
)
from tests._standins import N_VOXELS, fit_regressors, install_stand_ins, stand_in_pipeline


def _atlas(subject="1", with_hv4=True):
    """12 voxels: V1 = 0-2, V2 = 2-3 (voxel 2 in both), faces = 5-6, hV4 = 8 (or absent)."""
    regions = {"V1": np.array([0, 1, 2]), "V2": np.array([2, 3]), "faces": np.array([5, 6])}
    if with_hv4:
        regions["hV4"] = np.array([8])
    absent = {name: f"subject {subject} has no {name} voxels" for name in ALL_REGIONS if name not in regions}
    return ROIAtlas(subject=subject, n_voxels=N_VOXELS, regions=regions, absent=absent)


@pytest.fixture
def models(monkeypatch):
    install_stand_ins(monkeypatch)
    return ROIModels(pipeline=stand_in_pipeline({}), atlases={"1": _atlas("1"), "2": _atlas("2", with_hv4=False)},
                     regressors={"1": fit_regressors(10), "2": fit_regressors(20)})


def test_parse_regions_forms_and_errors():
    assert parse_regions("V1:+1,faces:+1,V2:-1") == {"V1": 1.0, "faces": 1.0, "V2": -1.0}
    assert parse_regions("+v1 +HV4 -bodies ecc4+:-0.5") == {"V1": 1.0, "hV4": 1.0, "bodies": -1.0, "ecc4+": -0.5}
    assert parse_regions("+V1 +V4 +faces -V2 -bodies") == {"V1": 1.0, "hV4": 1.0, "faces": 1.0, "V2": -1.0,
                                                           "bodies": -1.0}  # the paper's question, its V4 spelling
    assert parse_regions("  ") == {}
    assert parse_regions(format_regions({"V1": 2.0, "ecc4+": -0.5})) == {"V1": 2.0, "ecc4+": -0.5}
    with pytest.raises(ValueError, match="unknown region 'V9'.*expected one of V1, V2"):
        parse_regions("V1,V9:+1")
    with pytest.raises(ValueError, match="weight of 'V1' must be a finite number.*got 'abc'"):
        parse_regions("V1:abc")
    with pytest.raises(ValueError, match="weight of 'V2'.*got 'inf'"):
        parse_regions("V2:inf")
    with pytest.raises(ValueError, match="'V1' is given twice"):
        parse_regions("V1, v1:-1")
    with pytest.raises(TypeError, match="expected a string"):
        parse_regions(["V1"])


def test_combination_with_negative_weights():
    pattern = synthetic_pattern(_atlas(), parse_regions("V1:+1,faces:+1,V2:-1"))
    np.testing.assert_array_equal(pattern, [1, 1, 0, -1, 0, 1, 1, 0, 0, 0, 0, 0])
    assert pattern.dtype == np.float32
    pattern = synthetic_pattern(_atlas(), {"hV4": 0.5}, painted=[10, 11, 10], painted_weight=2.0)
    np.testing.assert_array_equal(pattern, [0, 0, 0, 0, 0, 0, 0, 0, 0.5, 0, 2, 2])


def test_pattern_errors():
    with pytest.raises(ValueError, match="empty selection: choose at least one region"):
        synthetic_pattern(_atlas(), {}, painted=[])
    with pytest.raises(ValueError, match="cancel out"):
        synthetic_pattern(_atlas(), {"faces": 1.0}, painted=[5, 6], painted_weight=-1.0)
    with pytest.raises(ValueError, match="'hV4' is not available for subject 2: subject 2 has no hV4 voxels"):
        synthetic_pattern(_atlas("2", with_hv4=False), {"hV4": 1.0})
    with pytest.raises(ValueError, match=r"voxel indices must lie in 0..11"):
        synthetic_pattern(_atlas(), painted=[12])


def test_brush_over_a_region_maps_to_its_voxels():
    # A 20x20 flatmap: V1's voxels 0-2 fill the left band, faces' voxels 5-6 the right band, cortex gaps = -1.
    lookup = np.full((20, 20), -1)
    lookup[:, 0:6] = np.repeat([0, 1, 2], 2)
    lookup[:, 14:18] = np.repeat([5, 6], 2)
    yy, xx = np.mgrid[:20, :20]
    brush = (yy - 10) ** 2 + (xx - 3) ** 2 <= 3**2  # a disk brush over V1's band
    voxels = painted_voxels(brush, lookup)
    np.testing.assert_array_equal(voxels, _atlas().indices("V1"))
    np.testing.assert_array_equal(synthetic_pattern(_atlas(), painted=voxels), _atlas().mask("V1"))
    assert painted_voxels(brush & (xx > 8) & (xx < 12), lookup).size == 0  # painted only between regions
    with pytest.raises(ValueError, match="empty selection"):
        synthetic_pattern(_atlas(), painted=painted_voxels(np.zeros((20, 20), bool), lookup))
    with pytest.raises(ValueError, match=r"mask: expected the flatmap's shape \(20, 20\)"):
        painted_voxels(np.zeros((5, 5), bool), lookup)


def test_grid_lookup_maps_to_subject_voxels():
    grid_shape = (4, 3, 2)
    voxel_ijk = np.array([[3, 2, 1], [0, 0, 0], [1, 2, 0]])  # the subject's voxels 0, 1, 2
    atlas = ROIAtlas("1", 3, {"V1": np.array([0, 2])}, {}, voxel_ijk=voxel_ijk, grid_shape=grid_shape)
    grid_index = np.array([[23, 0, -1], [10, 5, 23]])  # 10 = (1, 2, 0); 5 = (0, 2, 1) is not a subject voxel
    lookup = flatmap_voxel_lookup(grid_index, atlas)
    np.testing.assert_array_equal(lookup, [[0, 1, -1], [2, -1, 0]])
    np.testing.assert_array_equal(painted_voxels(np.array([[True, False, True], [True, True, False]]), lookup),
                                  [0, 2])
    with pytest.raises(ValueError, match="no voxel positions"):
        flatmap_voxel_lookup(grid_index, _atlas())


def test_pattern_features_norm_rescale_is_the_regressors_norm_of_the_zscored_pattern(models):
    patterns = np.stack([synthetic_pattern(_atlas(), {"V1": 1}), synthetic_pattern(_atlas(), {"faces": 3})])
    features = predict_pattern_features(models.regressors["1"], patterns, rescale="norm")
    assert features["clip_vision"].shape == (2, 257, 4) and features["vdvae"].dtype == np.float32
    for name, reg in models.regressors["1"].items():
        # The regressor must see the pattern itself (z-scored units), not a pattern in beta file units.
        raw = predict_linear(patterns, reg.weights_, reg.intercept_)
        expected = rescale_predictions(raw, "norm", target_mean=reg.target_mean_, target_std=reg.target_std_,
                                       pred_mean=reg.pred_mean_, pred_std=reg.pred_std_, pred_norm=reg.pred_norm_)
        np.testing.assert_allclose(features[name].reshape(2, -1), expected, rtol=1e-4, atol=1e-5)


def test_pattern_features_effect_rescale_sizes_the_effect_as_the_reference(models):
    patterns = np.stack([synthetic_pattern(_atlas(), {"V1": 1}), synthetic_pattern(_atlas(), {"V1": 5}),
                         synthetic_pattern(_atlas(), {"faces": 1, "V1": -1}), np.zeros(_atlas().n_voxels)])
    features = predict_pattern_features(models.regressors["1"], patterns)  # default "effect"
    assert features["clip_text"].shape == (4, 77, 4) and features["clip_text"].dtype == np.float32
    for name, reg in models.regressors["1"].items():
        got = features[name].reshape(4, -1)
        raw = predict_linear(patterns, reg.weights_, reg.intercept_)
        effect = raw[:3] - reg.intercept_
        size = np.sqrt(np.sum(reg.target_std_.astype(np.float64) ** 2))  # a training image's deviation
        expected = reg.intercept_ + effect * (size / np.linalg.norm(effect, axis=1, keepdims=True))
        np.testing.assert_allclose(got[:3], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[0], got[1], rtol=1e-5, atol=1e-5)  # the overall weight does not matter
        np.testing.assert_allclose(got[3], reg.intercept_, rtol=1e-5, atol=1e-5)  # no effect: the intercept
    with pytest.raises(ValueError, match="rescale"):
        predict_pattern_features(models.regressors["1"], patterns, rescale="train")


def test_recipe_json_round_trips_to_the_same_image(models, tmp_path):
    recipe = Recipe(subject=1, regions=parse_regions("V1:+1,faces:+1,V2:-1"), painted=[10], seed=7,
                    settings={"strength": 0.5, "num_inference_steps": 10})
    first = models.generate(recipe)
    loaded = Recipe.load(recipe.save(tmp_path / "recipe.json"))
    assert loaded == recipe and loaded.subject == "1"
    again = models.generate(loaded)
    np.testing.assert_array_equal(again.final, first.final)
    np.testing.assert_array_equal(again.vdvae, first.vdvae)
    assert first.final.shape == (1, 16, 16, 3) and first.vdvae.shape == (1, 8, 8, 3)
    other = models.generate(Recipe(subject=1, regions=recipe.regions, painted=[10], seed=8))
    assert not np.array_equal(other.final, first.final)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a braindiff ROI recipe"):
        Recipe.load(tmp_path / "bad.json")


def test_average_is_mean_of_each_subjects_own_prediction(models):
    average = models.features(Recipe(subject="average", regions={"V1": 1, "V2": -1}))
    per_subject = [predict_pattern_features(models.regressors[s], synthetic_pattern(models.atlases[s],
                                                                                   {"V1": 1, "V2": -1}))
                   for s in ("1", "2")]
    np.testing.assert_allclose(average["clip_text"], (per_subject[0]["clip_text"] + per_subject[1]["clip_text"]) / 2,
                               rtol=1e-5)
    with pytest.warns(RuntimeWarning, match=r"leaves out subjects 2 \(no hV4 voxels\)"):
        only_one = models.features(Recipe(subject="average", regions={"hV4": 1}))
    expected = predict_pattern_features(models.regressors["1"], synthetic_pattern(models.atlases["1"], {"hV4": 1}))
    np.testing.assert_allclose(only_one["vdvae"], expected["vdvae"], rtol=1e-6)
    with pytest.raises(ValueError, match="painted voxels belong to one subject"):
        Recipe(subject="average", painted=[1])
    with pytest.raises(ValueError, match="subject: expected one of"):
        models.features(Recipe(subject=5, regions={"V1": 1}))


@pytest.mark.filterwarnings("ignore:subject average leaves out")
def test_paper_figure_grid(models):
    done = []
    grid = paper_figure(models, ["V1", "hV4"], cell=32, callback=lambda i, n: done.append((i, n)))
    assert grid.shape == (28 + 3 * 32, 90 + 2 * 32, 3) and grid.dtype == np.uint8
    assert done[-1] == (6, 6)
    absent_cell = grid[28 + 32:28 + 64, 90 + 32:90 + 64]  # subject 2, hV4
    assert (absent_cell[2:10, 2:10] == 200).all()
    filled_cell = grid[28:28 + 30, 90:90 + 30]  # subject 1, V1
    assert filled_cell.std() > 0


def test_brush_on_the_demo_flatmap_paints_the_region_under_it(tmp_path):
    from scipy.ndimage import distance_transform_edt

    from braindiff_app.data.atlas import load_atlas
    from braindiff_app.data.flatmap import load_flatmap
    from braindiff_app.data.nsd_layout import write_roi
    from braindiff_app.demo.anatomy import load_anatomy

    anatomy, flatmap = load_anatomy(), load_flatmap()
    write_roi(tmp_path, 1, "nsdgeneral", anatomy.nsdgeneral.astype(np.int16))
    for stem, volume in anatomy.rois.items():
        write_roi(tmp_path, 1, stem, volume.astype(np.int16))
    atlas = load_atlas(tmp_path, 1)
    assert "hV4" in atlas.absent and "words" in atlas.absent  # the demo subject has neither
    image, lookup = load_subject_flatmap(load_settings(home=tmp_path, tier="demo"), atlas)
    assert image.shape[:2] == lookup.shape == flatmap.pixel_voxel.shape
    np.testing.assert_array_equal(lookup, flatmap_voxel_lookup(flatmap.pixel_voxel, atlas))
    for region in ("V1", "faces", "places"):
        # A round brush of radius 5 px on the pixel deepest inside the region's outline.
        depth = distance_transform_edt(np.isin(lookup, atlas.indices(region)))
        cy, cx = np.unravel_index(np.argmax(depth), depth.shape)
        grid_y, grid_x = np.mgrid[:lookup.shape[0], :lookup.shape[1]]
        brush = (grid_y - cy) ** 2 + (grid_x - cx) ** 2 <= 5**2
        voxels = painted_voxels(brush, lookup)
        assert voxels.size >= 3
        assert np.isin(voxels, atlas.indices(region)).mean() >= 0.8, region


@pytest.mark.parametrize("rescale", ["effect", "norm"])
def test_pattern_features_match_the_former_beta_round_trip(rescale):
    """predict_pattern_features now predicts the z-scored pattern through the regressor's public API; it gives
    what the former code gave: the pattern mapped back to beta file units with the regressor's preprocessing
    statistics, predicted by ``predict``, and (for "effect") the effect sized to the norm of ``target_std_``."""
    from braindiff_app.regression import FMRI_DIVISOR, RidgeRegressor

    rng = np.random.default_rng(3)
    fmri = rng.normal(0, 300, (40, N_VOXELS)) + rng.normal(0, 100, N_VOXELS)
    shapes = {"vdvae": (6,), "clip_vision": (3, 4), "clip_text": (2, 4)}
    regressors = {name: RidgeRegressor(30.0).fit(fmri, rng.normal(size=(40, *shape)).astype(np.float32))
                  for name, shape in shapes.items()}
    patterns = np.stack([synthetic_pattern(_atlas(), {"V1": 1}), synthetic_pattern(_atlas(), {"faces": 2, "V2": -1}),
                         np.zeros(N_VOXELS)])
    features = predict_pattern_features(regressors, patterns, rescale=rescale)
    for name, reg in regressors.items():
        betas = (patterns * reg.fmri_scale_ + reg.fmri_mean_) * FMRI_DIVISOR
        if rescale == "norm":
            expected = reg.predict(betas, rescale="norm")
        else:
            rows = np.concatenate([betas, ((0 * patterns[:1]) * reg.fmri_scale_ + reg.fmri_mean_) * FMRI_DIVISOR])
            raw = np.asarray(reg.predict(rows, rescale="none"), np.float64).reshape(len(rows), -1)
            effect = raw[:-1] - raw[-1:]
            size = np.sqrt(np.sum(np.asarray(reg.target_std_, np.float64) ** 2))
            norms = np.linalg.norm(effect, axis=1, keepdims=True)
            expected = (raw[-1:] + effect * (size / np.where(norms > 0, norms, 1.0))).reshape(len(patterns),
                                                                                               *shapes[name])
        assert features[name].shape == (3, *shapes[name]) and features[name].dtype == np.float32
        np.testing.assert_allclose(features[name], expected, rtol=1e-5, atol=1e-6)


# -- recipe settings and identity ---------------------------------------------------------------------------------
#: What the pipeline call used for a stage-2 field an old recipe left out (its literal defaults before
#: Stage2Settings): old recipe files must still make the same image.
OLD_CALL_DEFAULTS = {"strength": 0.75, "vision_weight": 0.6, "guidance_scale": 7.5, "num_inference_steps": 50}


@pytest.mark.parametrize("old_settings", [
    None,  # no settings key at all
    {},
    {"tier": "demo", "num_inference_steps": 20},  # as the ROI studio wrote them
    {"strength": 0.75, "num_inference_steps": 20, "rescale": "effect", "tier": "demo"},  # as `braindiff roi` did
    {"rescale": "norm", "guidance_scale": 5.0},
])
def test_old_recipe_files_load_and_make_the_same_image(models, tmp_path, monkeypatch, old_settings):
    import json

    from braindiff_app.pipeline import BrainDiffuserPipeline
    from braindiff_app.stage2 import Stage2Settings

    data = {"format": "braindiff-roi-recipe", "version": 1, "subject": "1", "regions": {"V1": 1.0},
            "painted": [4], "painted_weight": -0.5, "seed": 3}
    if old_settings is not None:
        data["settings"] = old_settings
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    recipe = Recipe.load(path)
    old = dict(old_settings or {})
    expected = {**OLD_CALL_DEFAULTS, **{k: v for k, v in old.items() if k in OLD_CALL_DEFAULTS}}
    assert recipe.stage2 == Stage2Settings(**expected)
    assert recipe.settings == {**expected, "rescale": old.get("rescale", "effect"), "protocol": "braindiff",
                               **({"tier": old["tier"]} if "tier" in old else {})}  # completed, protocol too
    seen = []
    original = BrainDiffuserPipeline.diffusion_stage
    monkeypatch.setattr(BrainDiffuserPipeline, "diffusion_stage",
                        lambda self, *args, **params: seen.append(params) or original(self, *args, **params))
    image = models.generate(recipe).final[0]
    assert seen == [{**expected, "batch_size": 8}]  # the same numbers reach the model
    reference = models.pipeline(features=models.features(recipe), seeds=np.array([3]), **expected).final[0]
    np.testing.assert_array_equal(image, reference)
    assert Recipe.from_json(recipe.to_json()) == recipe and recipe.content_id == Recipe.load(path).content_id


def test_bad_recipe_settings_name_the_file_and_field(tmp_path):
    import json

    base = {"format": "braindiff-roi-recipe", "version": 1, "subject": "1", "regions": {"V1": 1.0}}
    for settings, match in [({"guidance_scale": 0.5}, "guidance_scale: expected a value >= 1"),
                            ({"strength": "x"}, "strength: expected a number"),
                            ({"guidance": 7.5}, r"unknown key\(s\) \['guidance'\]"),
                            ({"rescale": "big"}, "settings.rescale: expected one of"),
                            ({"tier": "huge"}, "settings.tier: expected one of")]:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**base, "settings": settings}))
        with pytest.raises(ValueError, match=f"bad.json: .*{match}"):
            Recipe.load(path)


def test_recipe_content_id_follows_the_whole_content():
    from braindiff_app.stage2 import Stage2Settings

    base = dict(subject="1", regions={"V1": 1.0, "faces": -0.5}, painted=(3, 4), painted_weight=1.0, seed=2,
                settings={**Stage2Settings.for_tier("demo").to_json(), "tier": "demo"})
    recipe = Recipe(**base)
    assert len(recipe.content_id) == 16 and int(recipe.content_id, 16) >= 0
    assert Recipe(**base).content_id == recipe.content_id
    # Same content written otherwise: region order, painted order and duplicates, defaults given or left out.
    assert Recipe(**{**base, "regions": {"faces": -0.5, "V1": 1}, "painted": (4, 3, 3)}).content_id == \
        recipe.content_id
    assert Recipe(subject="1", regions={"V1": 1.0}).content_id == Recipe(
        subject="1", regions={"V1": 1.0}, settings={**Stage2Settings().to_json(), "rescale": "effect"}).content_id
    changed = [
        {"painted_weight": -1.0}, {"painted": (3,)}, {"painted": ()}, {"seed": 3}, {"subject": "2"},
        {"regions": {"V1": 1.0, "faces": 0.5}}, {"regions": {"V1": 1.0}},
        *({"settings": {**base["settings"], key: value}} for key, value in [
            ("strength", 0.5), ("vision_weight", 0.5), ("guidance_scale", 5.0), ("num_inference_steps", 21),
            ("rescale", "norm"), ("tier", "real")]),
    ]
    ids = {Recipe(**{**base, **change}).content_id for change in changed}
    assert len(ids) == len(changed) and recipe.content_id not in ids


def test_recipe_content_id_is_the_same_in_another_process():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import braindiff_app

    recipe = Recipe(subject="1", regions={"V1": 1.0}, painted=(5,), painted_weight=-1.0, seed=7,
                    settings={"guidance_scale": 5.0, "tier": "demo"})
    package_root = str(Path(braindiff_app.__file__).resolve().parents[1])  # this checkout's package
    code = ("from braindiff_app.roi import Recipe; print(Recipe(subject='1', regions={'V1': 1.0}, painted=(5,), "
            "painted_weight=-1.0, seed=7, settings={'guidance_scale': 5.0, 'tier': 'demo'}).content_id)")
    ids = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": package_root}).stdout.strip()
           for seed in ("1", "2")}
    assert ids == {recipe.content_id}

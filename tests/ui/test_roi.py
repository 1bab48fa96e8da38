"""The ROI studio: painting on an NSD subject's flatmap, presets without one, and what API clients can call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from braindiff_app.config import load_settings
from braindiff_app.data._flatmap_draw import ROI_COLORS
from braindiff_app.data.atlas import load_atlas
from braindiff_app.data.nsd_layout import write_roi
from braindiff_app.roi import ROIModels
from braindiff_app.ui import build_app
from braindiff_app.ui.roi import ROIHandlers
from braindiff_app.ui.state import AppState
from tests.nsd_factory import make_nsd_anatomy


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsd")
    make_nsd_anatomy(root, subject=1)
    # Subject 2: ROI volumes only (region presets), no FreeSurfer surfaces or transforms.
    write_roi(root, 2, "nsdgeneral", np.ones((4, 3, 2), np.int16))
    write_roi(root, 2, "prf-visualrois", np.pad(np.ones((2, 3, 2), np.int16), ((0, 2), (0, 0), (0, 0))))
    settings = load_settings(home=root / "home", tier="real", nsd_root=root, extra_bundle_dirs=())
    h = ROIHandlers(AppState(settings))
    h._models = ROIModels(pipeline=None, atlases={s: load_atlas(root, s) for s in ("1", "2")}, regressors={},
                          tier="real")
    return h


def test_nsd_subject_paints_through_its_flatmap(handlers):
    assert handlers.flatmap_problem("1") == ""
    image, lookup = handlers.flatmap("1")
    atlas = handlers.models().atlases["1"]
    outline = (image[..., :3] == ROI_COLORS["faces"]).all(axis=-1)
    recipe = handlers.recipe("1", {"V1": 1.0}, outline, painted_weight=-1.0, seed=3)
    assert recipe.painted and set(recipe.painted) <= set(atlas.indices("faces").tolist())
    shown = handlers.pattern_image(recipe)
    assert shown.shape == (*lookup.shape, 3)
    on_v1 = np.isin(lookup, atlas.indices("V1"))
    assert (shown[on_v1][:, 0] > shown[on_v1][:, 2]).all()  # positive weight: red
    on_faces = np.isin(lookup, recipe.painted)
    assert (shown[on_faces][:, 2] > shown[on_faces][:, 0]).all()  # painted with -1: blue


def test_subject_without_surfaces_keeps_presets_with_a_message(handlers):
    problem = handlers.flatmap_problem("2")
    assert problem.startswith("painting unavailable") and "lh.full.flat.patch.3d" in problem
    assert "region sliders still work" in problem
    recipe = handlers.recipe("2", {"V1": 1.0}, None, painted_weight=1.0, seed=0)
    assert recipe.regions == {"V1": 1.0} and handlers.pattern_image(recipe) is None
    with pytest.raises(FileNotFoundError, match="flattened cortex of subj02"):
        handlers.recipe("2", {}, np.ones((5, 5), bool), painted_weight=1.0, seed=0)


def test_subject_choices_are_known_before_the_tab_is_opened():
    """gradio checks a Dropdown's value against the choices the app was built with; they were empty, so
    gradio_client calls to /roi_generate failed with "Value: 1 is not in the list of choices: []"."""
    _, _, components = build_app(load_settings(tier="demo"))  # empty home: the committed demo ROI workspace
    values = [value for _, value in components["roi.subject"].choices]
    assert values[0] == "1" and values[-1] == "average" and len(values) >= 3
    assert components["roi.subject"].value is None  # chosen when the tab opens (models loaded then)


def test_no_subject_choices_without_regressors(tmp_path):
    settings = load_settings(tier="real", home=tmp_path / "home")
    _, _, components = build_app(settings)
    assert components["roi.subject"].choices == []


def test_regions_a_subject_lacks_are_disabled_with_the_reason(handlers):
    reasons = handlers.availability("2")  # subject 2 has prf-visualrois (V1 only) and no floc files
    assert reasons["V1"] == ""
    assert reasons["V2"] == "subject 2 has no V2 voxels"
    assert reasons["faces"].startswith("floc-faces.nii.gz is missing from")
    average = handlers.availability("average")  # available when any subject has it
    assert average["faces"] == "" and average["V1"] == ""
    atlases = handlers.models().atlases.values()
    nowhere = [r for r in average if all(r not in a.regions for a in atlases)]
    assert nowhere  # (e.g. hV4: neither subject's ROI files hold it)
    for region in nowhere:  # said of the subjects averaged, not as if the average were subject 1
        assert average[region] == f"none of subjects 1, 2 has {region} voxels"
    assert all(reason == "" for region, reason in handlers.availability("1").items()
               if region in handlers.models().atlases["1"].regions)


def test_empty_or_off_cortex_selections_give_the_studio_messages(handlers):
    from braindiff_app.ui import text

    with pytest.raises(ValueError, match="^Nothing selected") as empty:
        handlers.recipe("1", {"V1": 0.0}, None, painted_weight=1.0, seed=0)
    assert str(empty.value) == text.ROI_EMPTY
    _, lookup = handlers.flatmap("1")
    off_cortex = lookup < 0
    assert off_cortex.any()
    with pytest.raises(ValueError) as off:
        handlers.recipe("1", {}, off_cortex, painted_weight=1.0, seed=0)
    assert str(off.value) == text.ROI_PAINT_OFF_CORTEX
    with pytest.raises(ValueError) as average:
        handlers.recipe("average", {}, ~off_cortex, painted_weight=1.0, seed=0)
    assert str(average.value) == text.ROI_PAINT_AVERAGE


def _former_pattern_image(handlers, recipe):
    """The picture as ui/roi.py drew it before it took the pattern from ROIModels: its own region indicators (on
    the studio's map)."""
    from braindiff_app.ui.roi import PATTERN_COLOURS

    models = handlers.models()
    subject = models.subjects[0] if recipe.subject == "average" else recipe.subject
    _, lookup = handlers.flatmap(subject)
    image = handlers.map_image(subject)  # the studio's map: outlines drawn from the atlas
    atlas = models.atlases[subject]
    weight = np.zeros(atlas.n_voxels, dtype=np.float32)
    for region, w in recipe.regions.items():
        if region in atlas.regions:
            weight[atlas.indices(region)] += w
    weight[list(recipe.painted)] += recipe.painted_weight
    pixel_weight = np.where(lookup >= 0, weight[np.clip(lookup, 0, None)], 0.0)
    out = image[..., :3].copy()
    for sign, colour in PATTERN_COLOURS.items():
        hit = np.sign(pixel_weight) == sign
        out[hit] = (0.35 * out[hit] + 0.65 * np.array(colour)).astype(np.uint8)
    return out


def test_pattern_image_is_the_picture_drawn_before(handlers):
    image, _ = handlers.flatmap("1")
    atlas = handlers.models().atlases["1"]
    outline = (image[..., :3] == ROI_COLORS["faces"]).all(axis=-1)
    shared = [r for r in atlas.regions if r in handlers.models().atlases["2"].regions]
    assert shared
    recipes = [handlers.recipe("1", {"V1": 1.0, "V2": -0.5}, outline, painted_weight=-1.0, seed=3),
               handlers.recipe("1", {"faces": 1.0, "V1": 0.5}, None, painted_weight=1.0, seed=0),
               handlers.recipe("average", {shared[0]: -1.0}, None, painted_weight=1.0, seed=0)]
    for recipe in recipes:
        np.testing.assert_array_equal(handlers.pattern_image(recipe), _former_pattern_image(handlers, recipe))


# -- recipe files: named by content, one folder per browser session ----------------------------------------------
@pytest.fixture
def stand_in_handlers(tmp_path, monkeypatch):
    """The studio's handlers on the stand-in stages, with a 4x3 flatmap over 12 voxels (tier real, no NSD)."""
    from braindiff_app.data.atlas import ROIAtlas
    from tests._standins import N_VOXELS, fit_regressors, install_stand_ins, stand_in_pipeline

    install_stand_ins(monkeypatch)
    atlas = ROIAtlas("1", N_VOXELS, {"V1": np.array([0, 1]), "faces": np.array([4])}, {})
    models = ROIModels(stand_in_pipeline({}), {"1": atlas}, {"1": fit_regressors(1)}, tier="real")
    image = np.full((4, 3, 4), 255, np.uint8)
    lookup = np.arange(12).reshape(4, 3)
    monkeypatch.setattr(ROIHandlers, "models", lambda self: models)
    monkeypatch.setattr(ROIHandlers, "flatmap", lambda self, subject: (image, lookup))
    monkeypatch.setattr(ROIHandlers, "listed_subjects", lambda self: ["1", "average"])
    return load_settings(home=tmp_path / "home", tier="real", nsd_root=None, extra_bundle_dirs=())


def test_recipes_differing_in_paint_weight_get_their_own_files(stand_in_handlers):
    from braindiff_app.roi import Recipe

    handlers = ROIHandlers(AppState(stand_in_handlers))
    mask = np.zeros((4, 3), bool)
    mask[1, 1] = True  # voxel 4
    plus = handlers.recipe("1", {}, mask, painted_weight=1.0, seed=0)
    minus = handlers.recipe("1", {}, mask, painted_weight=-1.0, seed=0)
    assert plus.label == minus.label and plus.content_id != minus.content_id
    first, second = (handlers.generate(r, session="s1") for r in (plus, minus))
    assert first.recipe_path != second.recipe_path
    assert Recipe.load(first.recipe_path) == plus and Recipe.load(second.recipe_path) == minus
    assert first.recipe_path.endswith(f"roi-1-{plus.content_id}.json")
    # The same recipe again in the same session: the same file; another session: another folder.
    assert handlers.generate(plus, session="s1").recipe_path == first.recipe_path
    other = handlers.generate(plus, session="s2").recipe_path
    assert other != first.recipe_path and Path(other).name == Path(first.recipe_path).name
    assert Path(other).parent != Path(first.recipe_path).parent
    assert Path(first.recipe_path).parent.parent == Path(other).parent.parent  # both under the app's temp folder
    # A session hash is the browser's: it never becomes a path of its own.
    assert Path(handlers.generate(plus, session="../../x").recipe_path).parent.parent == Path(other).parent.parent
    no_session = [Path(handlers.generate(plus).recipe_path).parent for _ in range(2)]
    assert no_session[0] != no_session[1]


def test_history_keeps_each_experiments_recipe(stand_in_handlers):
    """Painting one stroke at +1, then at -1: the first history entry still downloads the +1 recipe."""
    from types import SimpleNamespace

    from braindiff_app.roi import Recipe

    app, _, _ = build_app(stand_in_handlers)
    fns = {fn.api_name: fn.fn for fn in app.fns.values()}
    layer = np.zeros((4, 3, 4), np.uint8)
    layer[1, 1, 3] = 255
    editor = {"background": None, "layers": [layer], "composite": None}
    from braindiff_app.ui.roi import REGION_PARAMS

    zero = {name: 0 for name in REGION_PARAMS.values()}
    folders = []
    for session in ("a", "b"):
        history = []
        for weight in (1.0, -1.0):
            *_, history, _ = fns["roi_generate"](SimpleNamespace(session_hash=session), "1", 0, editor, weight,
                                                 history, None, **zero)
        first, second = (Recipe.load(fns["roi_pick_history"](history, False, SimpleNamespace(index=i))[0])
                         for i in (0, 1))
        assert first.painted == second.painted == (4,)
        assert (first.painted_weight, second.painted_weight) == (1.0, -1.0)
        paths = [Path(run[1]) for run in history]
        assert paths[0] != paths[1] and paths[0].parent == paths[1].parent
        folders.append(paths[0].parent)
    assert folders[0] != folders[1]  # two browser sessions: two folders
    # gradio hands both handlers the event's request (and with it the session hash).
    from gradio.helpers import special_args

    request = SimpleNamespace(session_hash="c")
    assert special_args(fns["roi_generate"], inputs=[0] * 6, request=request)[0][0] is request
    assert special_args(fns["roi_replay_recipe"], inputs=[0, 0, 0], request=request)[0][3] is request

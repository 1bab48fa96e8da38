"""The closed loop on the committed demo workspace: round trip, best-of-N ranking, region scores, steering."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from braindiff_app.config import PACKAGE_DIR, load_settings
from braindiff_app.encoding import load_encoding_models, region_score
from braindiff_app.roi import Recipe, roi_settings
from braindiff_app.stage2 import Stage2Settings

STAGE2 = Stage2Settings.for_tier("demo").to_json()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    settings, committed = roi_settings(load_settings(home=tmp_path_factory.mktemp("home"), tier="demo"))
    assert committed
    return load_encoding_models(settings)


def _test_image() -> np.ndarray:
    path = PACKAGE_DIR / "precomputed" / "demo-subj01" / "images" / "ground_truth" / "00000.png"
    return np.asarray(Image.open(path).convert("RGB"))


def test_region_score_is_the_weighted_sum_of_region_means():
    responses = np.arange(12, dtype=float).reshape(2, 6)
    regions = {"V1": np.array([0, 1]), "faces": np.array([4])}
    expected = 1.0 * responses[:, [0, 1]].mean(1) - 0.5 * responses[:, 4]
    np.testing.assert_allclose(region_score(responses, regions, {"V1": 1.0, "faces": -0.5}), expected)
    with pytest.raises(ValueError, match="no voxels"):
        region_score(responses, regions, {"places": 1.0})


def test_round_trip_shapes(models):
    trip = models.round_trip("1", _test_image(), stage2=STAGE2)
    assert trip.response.shape == (models.encoder("1").n_voxels,) and np.isfinite(trip.response).all()
    assert trip.vdvae.ndim == 3 and trip.final.ndim == 3 and trip.final.dtype == np.uint8
    assert trip.final.std() > 5


def test_best_of_n_ranks_by_the_encoders_score(models):
    recipe = Recipe(subject="1", regions={"faces": 1.0, "places": -0.5}, seed=3, settings=STAGE2)
    ranked = models.best_of_n(recipe, 4)
    assert sorted(ranked.seeds.tolist()) == [3, 4, 5, 6]
    assert np.all(np.diff(ranked.scores) <= 0)  # best first
    # Independent score: the encoder's prediction for each final image, region means weighted by hand.
    atlas = models.roi.atlases["1"]
    predicted = models.predict("1", ranked.finals)
    by_hand = predicted[:, atlas.regions["faces"]].mean(1) - 0.5 * predicted[:, atlas.regions["places"]].mean(1)
    np.testing.assert_allclose(ranked.scores, by_hand, rtol=1e-4, atol=1e-5)
    assert len(set(np.round(ranked.scores, 6))) == 4
    # Each candidate is the image a single generate with its seed makes (batched float sums: within 1 level).
    single = models.roi.generate(Recipe(subject="1", regions=recipe.regions, seed=int(ranked.seeds[0]),
                                        settings=STAGE2)).final[0]
    assert np.abs(single.astype(int) - ranked.finals[0]).max() <= 1
    # The recipe records N and the ranking; the ranking survives JSON and leaves the content id alone.
    assert ranked.recipe.settings["candidates"] == 4
    assert [s for s, _ in ranked.recipe.ranking] == ranked.seeds.tolist()
    again = Recipe.from_json(ranked.recipe.to_json())
    assert again == ranked.recipe
    assert Recipe.from_json({**ranked.recipe.to_json(), "ranking": []}).content_id == ranked.recipe.content_id
    assert "ranking" not in recipe.to_json()


def test_best_of_n_for_the_average_scores_with_every_subject(models):
    ranked = models.best_of_n(Recipe(subject="average", regions={"V1": 1.0}, seed=0, settings=STAGE2), 2)
    per_subject = [region_score(models.predict(s, ranked.finals), models.roi.atlases[s].regions, {"V1": 1.0})
                   for s in models.subjects]
    np.testing.assert_allclose(ranked.scores, np.mean(per_subject, axis=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [0, 17, 2.5, True])
def test_best_of_n_bad_candidates(models, n):
    with pytest.raises(ValueError, match="candidates: expected an integer from 1 to 16"):
        models.best_of_n(Recipe(subject="1", regions={"V1": 1.0}), n)


@pytest.mark.parametrize(("ranking", "match"), [
    ([[1, "x"]], r"ranking\[0\]"), ([[1.5, 0.2]], r"ranking\[0\]"), ([[1, float("nan")]], r"ranking\[0\]"),
    ([[1, 0.1]] * 17, "at most 16"), ({"a": 1}, "list of"),
])
def test_recipe_refuses_bad_rankings(ranking, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Recipe(subject="1", regions={"V1": 1.0}, ranking=ranking)
    with pytest.raises(ValueError, match="settings.candidates"):
        Recipe(subject="1", regions={"V1": 1.0}, settings={"candidates": 0})


def test_steering_moves_the_predicted_activation(models):
    images, activation = models.steer("1", _test_image(), "faces", [-1.0, 0.0, 1.0], stage2=STAGE2)
    assert images.shape[0] == 3 and activation[2] > activation[0]
    with pytest.raises(ValueError, match=r"dials: expected values in \[-1, 1\]"):
        models.steer("1", _test_image(), "faces", [2.0])


def test_ranking_by_regions_no_scoring_subject_has_is_refused_by_name(models):
    image = _test_image()
    finals = np.stack([image, image[::-1]])
    recipe = Recipe(subject="average", regions={"words": 1.0}, seed=0, settings=STAGE2)  # no demo subject has words
    with pytest.raises(ValueError, match=r"regions: none of \['words'\] is a region of the scoring subject"):
        models.rank(recipe, finals, finals, [0, 1])
    ranked = models.rank(Recipe(subject="average", regions={"words": 1.0, "V1": 1.0}, seed=0, settings=STAGE2),
                         finals, finals, [0, 1])  # words skipped, V1 scores
    per_subject = [region_score(models.predict(s, finals), models.roi.atlases[s].regions, {"V1": 1.0})
                   for s in models.subjects]
    np.testing.assert_allclose(np.sort(ranked.scores), np.sort(np.mean(per_subject, axis=0)), rtol=1e-4, atol=1e-5)

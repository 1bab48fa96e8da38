import numpy as np
import pytest
import torch

from braindiff_app.demo.judge import (
    ContentJudge,
    content_scores,
    degrade_images,
    judge_training_set,
    predict_content,
    train_content_judge,
)
from braindiff_app.demo.stimuli import CATEGORIES, content_labels, render_scenes

PLACES = CATEGORIES.index("places")


@pytest.fixture(scope="module")
def small_judge():
    """A judge trained briefly on a few hundred small scenes (seconds on one thread)."""
    torch.set_num_threads(1)
    images, labels, _ = judge_training_set(240, seed=5, size=32)
    return train_content_judge(images, labels, size=16, width=8, epochs=6, batch_size=32, augment=0.0, seed=0)


def test_judge_beats_chance_on_held_out_places(small_judge):
    # Buildings are large and unmistakable: a briefly trained judge must find them in new scenes.
    images, scenes, _ = render_scenes(200, seed=6, size=32)
    scores = content_scores(predict_content(small_judge, images), content_labels(scenes))
    assert scores["places"]["auc"] > 0.8  # measured 0.93; chance 0.5
    assert scores["places"]["accuracy"] > max(scores["places"]["base_rate"], 1 - scores["places"]["base_rate"])


def test_predict_shapes_dtype_and_any_input_size(small_judge):
    for side in (16, 23, 70):
        images = np.random.default_rng(side).integers(0, 256, (3, side, side, 3), dtype=np.uint8)
        probs = predict_content(small_judge, images)
        assert probs.shape == (3, len(CATEGORIES)) and probs.dtype == np.float32
        assert ((probs >= 0) & (probs <= 1)).all()
    assert small_judge.training is False


def test_predict_rejects_bad_input(small_judge):
    good = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        predict_content(small_judge, good.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(n_images, height, width, 3\)"):
        predict_content(small_judge, good[..., 0])
    with pytest.raises(TypeError, match="numpy array"):
        predict_content(small_judge, good.tolist())
    with pytest.raises(TypeError, match="ContentJudge"):
        predict_content(torch.nn.Linear(3, 5), good)


def test_train_rejects_bad_labels_and_is_seeded():
    images, labels, _ = judge_training_set(16, seed=5, size=16)
    with pytest.raises(ValueError, match="labels: expected shape"):
        train_content_judge(images, labels[:, :3], size=16, width=4, epochs=1)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        ContentJudge(size=4)
    a, b = (train_content_judge(images, labels, size=16, width=4, epochs=1, batch_size=8, seed=3) for _ in range(2))
    c = train_content_judge(images, labels, size=16, width=4, epochs=1, batch_size=8, seed=4)
    np.testing.assert_array_equal(predict_content(a, images), predict_content(b, images))
    assert not np.array_equal(predict_content(a, images), predict_content(c, images))


def test_training_set_shares_scenes_among_degraders():
    calls = []

    def halve(images):  # returns a smaller side: must come back resized
        calls.append(len(images))
        return images[:, ::2, ::2] // 2

    images, labels, source = judge_training_set(9, seed=5, size=32, degraders={"halve": halve, "same": lambda x: x})
    clean, _, _ = render_scenes(9, seed=5, size=32)
    assert images.shape == (9, 32, 32, 3) and labels.shape == (9, len(CATEGORIES))
    np.testing.assert_array_equal(source, [0, 1, 2] * 3)
    assert calls == [3]
    np.testing.assert_array_equal(images[source != 1], clean[source != 1])
    assert images[source == 1].mean() < 0.6 * clean[source == 1].mean()
    with pytest.raises(ValueError, match=r"degraders\['short'\]: expected 4 images back"):
        judge_training_set(8, seed=5, size=32, degraders={"short": lambda x: x[:1]})


def test_degrade_images_is_seeded_and_in_range():
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = degrade_images(x, torch.Generator().manual_seed(1))
    b = degrade_images(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, x)


def test_content_scores_values_and_errors():
    labels = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], bool)
    perfect = content_scores(labels * 0.8 + 0.1, labels, categories=("a", "b"))
    assert perfect["a"] == {"accuracy": 1.0, "auc": 1.0, "base_rate": 0.5}
    inverted = content_scores(1 - labels.astype(float), labels, categories=("a", "b"))
    assert inverted["b"]["auc"] == 0.0 and inverted["b"]["accuracy"] == 0.0
    assert np.isnan(content_scores(np.full((2, 1), 0.3), np.ones((2, 1), bool), categories=("a",))["a"]["auc"])
    with pytest.raises(ValueError, match="expected two arrays of shape"):
        content_scores(np.zeros((4, 3)), labels, categories=("a", "b"))


@pytest.mark.parametrize("ties", [False, True])
def test_auc_is_roc_auc_score(ties):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(int(ties))
    probabilities = rng.random((300, 2))
    if ties:  # five distinct values: many tied scores across the classes (a tie counts one half)
        probabilities = np.round(probabilities * 4) / 4
    labels = rng.random((300, 2)) < [0.2, 0.6]
    scores = content_scores(probabilities, labels, categories=("a", "b"))
    for j, c in enumerate(("a", "b")):
        assert scores[c]["auc"] == roc_auc_score(labels[:, j], probabilities[:, j])
    # ties written out: one positive and one negative with the same score -> 0.5
    assert content_scores(np.array([[0.5], [0.5]]), np.array([[True], [False]]), categories=("a",))["a"]["auc"] == 0.5

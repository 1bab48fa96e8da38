"""Classroom quiz: deterministic questions, scoring, and the endpoints on a live app."""

from __future__ import annotations

import json

import numpy as np
import pytest

from braindiff_app.config import load_settings
from braindiff_app.ui.classroom import QuizHandlers, Score
from braindiff_app.ui.state import AppState
from tests.factories import make_bundle


@pytest.fixture
def quiz(tmp_path):
    make_bundle(tmp_path / "b", name="demo-subj01", n_trials=6, size=8)
    make_bundle(tmp_path / "b", name="tiny", n_trials=3, size=8)
    return QuizHandlers(AppState(load_settings(extra_bundle_dirs=(tmp_path / "b",))))


def test_question_has_answer_among_four_distinct(quiz):
    for round_index in range(1, 20):
        q = quiz.question("demo-subj01", round_index)
        assert len(q.candidates) == 4 and len(set(q.candidates)) == 4
        assert q.candidates[q.answer].endswith(f"ground_truth/{q.trial:05d}.png")
        assert q.reconstruction.endswith(f"final/{q.trial:05d}.png")
    assert quiz.question("demo-subj01", 3) == quiz.question("demo-subj01", 3)
    answers = {quiz.question("demo-subj01", r).answer for r in range(1, 40)}
    assert answers == {0, 1, 2, 3}


def test_scoring_counts_each_round_once(quiz):
    score = Score()
    q = quiz.question("demo-subj01", 1)
    wrong = (q.answer + 1) % 4
    right, message = quiz.answer(q, wrong, score, 1)
    assert not right and f"saw image {q.answer + 1}" in message and score.line() == "Score: 0 / 1."
    right, message = quiz.answer(q, q.answer, score, 1)  # a second vote in the same round counts for nothing
    assert right and message == f"Already answered: the person saw image {q.answer + 1}. Press **Next question** " \
        "(or N) for another."
    assert score.line() == "Score: 0 / 1."
    q2 = quiz.question("demo-subj01", 2)
    assert quiz.answer(q2, q2.answer, score, 2)[1] == "**Right!**" and score.line() == "Score: 1 / 2."


def test_errors(quiz):
    with pytest.raises(ValueError, match="needs at least 4 trials, tiny has 3"):
        quiz.question("tiny", 1)
    with pytest.raises(ValueError, match="choice: expected 0..3, got 7"):
        quiz.answer(quiz.question("demo-subj01", 1), 7, Score(), 1)


def test_quiz_endpoints_live(live_app):
    from gradio_client import Client

    url, _ = live_app
    client = Client(url, verbose=False)
    endpoints = set(client.view_api(return_format="dict")["named_endpoints"])
    assert {"/quiz_next", "/quiz_answer_1", "/quiz_answer_4"} <= endpoints
    shown, *candidates, verdict = client.predict("demo-subj01", "final", api_name="/quiz_next")
    assert len(candidates) == 4 and all(c for c in candidates) and "Which one" in verdict


def test_odds_are_the_bundles_stored_four_way_identification(quiz, tmp_path):
    from braindiff_app.bundles import write_metrics
    from braindiff_app.evaluation import n_way_identification

    assert quiz.odds("demo-subj01") == ""  # not evaluated: nothing claimed
    assert quiz.odds("no-such-bundle") == "" and quiz.odds(None) == ""
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(6, 10))
    per_trial = n_way_identification(gt, gt + rng.normal(scale=2.0, size=gt.shape), 4)
    write_metrics(quiz.state.bundle("demo-subj01").path, {"final": {"demo-CLIP 4-way": per_trial},
                                                          "vdvae": {"demo-CLIP 4-way": np.zeros(6)}})
    quiz.state.refresh()
    line = quiz.odds("demo-subj01")
    assert f"**{100 * per_trial.mean():.0f}%**" in line and "demo-CLIP" in line
    assert "this bundle's 6 test trials" in line
    assert "**0%**" in quiz.odds("demo-subj01", "vdvae")


def test_shipped_demo_quiz_states_its_odds():
    from braindiff_app.config import PACKAGE_DIR

    quiz = QuizHandlers(AppState(load_settings(tier="demo", extra_bundle_dirs=(PACKAGE_DIR / "precomputed",))))
    line = quiz.odds("demo-subj01")
    # The committed bundle's own per-trial scores (what Table 1 reports for subject 1), read as plain JSON.
    per_trial = json.loads((PACKAGE_DIR / "precomputed" / "demo-subj01" / "metrics.json").read_text())
    expected = 100 * np.mean(per_trial["final"]["demo-CLIP 4-way"])
    assert 25 < expected < 100  # above chance: the shipped demo is a real reconstruction
    assert f"**{expected:.0f}%**" in line and "this bundle's 100 test trials" in line


def test_the_quiz_offers_and_asks_only_bundles_decoded_from_a_brain(tmp_path):
    make_bundle(tmp_path / "b", name="demo-subj01", n_trials=6, size=8)
    make_bundle(tmp_path / "b", name="demo-subj01-true-features", n_trials=6, size=8, settings={"features": "true"})
    state = AppState(load_settings(extra_bundle_dirs=(tmp_path / "b",)))
    assert [key for _, key in state.choices()] == ["demo-subj01", "demo-subj01-true-features"]
    assert [key for _, key in state.choices(decoded_only=True)] == ["demo-subj01"]
    quiz = QuizHandlers(state)
    with pytest.raises(ValueError, match="demo-subj01-true-features: made from the seen images' own features"):
        quiz.question("demo-subj01-true-features", 1)
    assert quiz.question("demo-subj01", 1).bundle == "demo-subj01"

"""Classroom mode: large images and a quiz built on the 2-way identification idea.

A question shows one reconstruction and four seen images; the class guesses which one the person saw. The quiz
only reads bundles, so it runs on any laptop with no GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr
import numpy as np

from braindiff_app.ui import text
from braindiff_app.ui.state import AppState

__all__ = ["Question", "QuizHandlers", "build_classroom_tab"]

N_CHOICES = 4


@dataclass(frozen=True)
class Question:
    """One quiz question.

    Attributes
    ----------
    bundle : str
        Bundle name.
    trial : int
        The trial whose reconstruction is shown.
    reconstruction : str
        Path of the shown reconstruction (kind ``final`` or ``vdvae``).
    candidates : list of str
        Paths of the four seen images, in display order.
    answer : int
        Position of the right candidate, 0 ... 3.
    """

    bundle: str
    trial: int
    reconstruction: str
    candidates: list[str]
    answer: int


@dataclass
class Score:
    """A class's running score."""

    asked: int = 0
    right: int = 0
    answered: set = field(default_factory=set)

    def line(self) -> str:
        return text.QUIZ_SCORE.format(right=self.right, asked=self.asked)


class QuizHandlers:
    """The quiz's actions, independent of gradio."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def question(self, bundle_name: str, round_index: int, kind: str = "final") -> Question:
        """The question of round ``round_index``: deterministic for a (bundle, round), so a class can replay it.

        Raises
        ------
        ValueError
            If the bundle has fewer than four trials.
        """
        bundle = self.state.bundle(bundle_name)
        if bundle.n_trials < N_CHOICES:
            raise ValueError(f"bundle: the quiz needs at least {N_CHOICES} trials, {bundle.name} has "
                             f"{bundle.n_trials}.")
        rng = np.random.default_rng([int(round_index), bundle.n_trials])
        trial = int(rng.integers(bundle.n_trials))
        others = rng.choice(np.delete(np.arange(bundle.n_trials), trial), N_CHOICES - 1, replace=False)
        answer = int(rng.integers(N_CHOICES))
        shown = [int(i) for i in others]
        shown.insert(answer, trial)
        return Question(
            bundle=bundle.name,
            trial=trial,
            reconstruction=str(bundle.image_path(trial, kind)),
            candidates=[str(bundle.image_path(i, "ground_truth")) for i in shown],
            answer=answer,
        )

    def answer(self, question: Question, choice: int, score: Score, round_index: int) -> tuple[bool, str]:
        """Check a choice; a round counts once towards the score. Returns (right, message)."""
        if not 0 <= int(choice) < N_CHOICES:
            raise ValueError(f"choice: expected 0..{N_CHOICES - 1}, got {choice}.")
        right = int(choice) == question.answer
        if round_index not in score.answered:
            score.answered.add(round_index)
            score.asked += 1
            score.right += int(right)
        verdict = text.QUIZ_RIGHT if right else text.QUIZ_WRONG.format(n=question.answer + 1)
        return right, f"{verdict} {score.line()}"


# Full screen: the Classroom's own column fills the screen (the browser's Fullscreen API, from a click).
FULLSCREEN_JS = """() => {
  const room = document.getElementById('classroom');
  if (document.fullscreenElement) { document.exitFullscreen(); } else if (room) { room.requestFullscreen(); }
}"""

CSS = """
#classroom:fullscreen { background: var(--body-background-fill); padding: 2rem; overflow: auto; }
#classroom:fullscreen .classroom-big img { max-height: 78vh !important; }
#classroom:fullscreen .classroom-choice img { max-height: 36vh !important; }
#classroom:fullscreen .prose { font-size: 1.4rem; }
.classroom-big img { max-height: 60vh !important; }
.classroom-choice img { max-height: 28vh !important; }
.bd-panel img, .classroom-big img, .classroom-choice img {
  width: 100% !important; height: 100% !important; object-fit: contain; image-rendering: auto;
}
"""


def build_classroom_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the Classroom tab inside ``app``; returns its components keyed ``classroom.<name>``."""
    handlers = QuizHandlers(state)
    choices = state.choices()

    with gr.Tab(text.CLASSROOM_TAB), gr.Column(elem_id="classroom"):
        gr.Markdown(text.QUIZ_INTRO)
        with gr.Row():
            subject = gr.Dropdown(choices=choices, value=state.default_bundle, label=text.SUBJECT, scale=3)
            kind = gr.Radio([(text.QUIZ_FINAL, "final"), (text.QUIZ_VDVAE, "vdvae")], value="final",
                            label=text.QUIZ_SHOW, scale=2)
            new = gr.Button(text.QUIZ_NEXT, variant="primary", scale=1)
            fullscreen = gr.Button(text.QUIZ_FULLSCREEN, scale=1)
        round_index = gr.State(0)
        question = gr.State(None)
        score = gr.State(lambda: Score())
        with gr.Row():
            shown = gr.Image(label=text.QUIZ_RECONSTRUCTION, type="filepath", interactive=False, height=420,
                             elem_classes="classroom-big", buttons=["fullscreen"])
            with gr.Column():
                with gr.Row():
                    candidates = [gr.Image(label=f"{i + 1}", type="filepath", interactive=False, height=200,
                                           elem_classes="classroom-choice", buttons=["fullscreen"])
                                  for i in range(N_CHOICES)]
                with gr.Row():
                    buttons = [gr.Button(f"{i + 1}", size="lg") for i in range(N_CHOICES)]
        verdict = gr.Markdown(text.QUIZ_START)

    def ask(bundle_name, kind_value, current_round):
        if not bundle_name:
            raise gr.Error(text.no_bundle(state.settings.tier, state.settings.bundle_dirs))
        next_round = int(current_round) + 1
        try:
            q = handlers.question(bundle_name, next_round, kind_value)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return [next_round, q, q.reconstruction, *q.candidates, text.QUIZ_ASK]

    def choose(choice: int):
        def handler(q, current_round, current_score):
            if q is None:
                raise gr.Error(text.QUIZ_NO_QUESTION)
            _, message = handlers.answer(q, choice, current_score, int(current_round))
            return message, current_score
        return handler

    outputs = [round_index, question, shown, *candidates, verdict]
    new.click(ask, [subject, kind, round_index], outputs, api_name="quiz_next")
    fullscreen.click(None, js=FULLSCREEN_JS, api_name=False)  # browser-side only: nothing for an API client
    for i, button in enumerate(buttons):
        button.click(choose(i), [question, round_index, score], [verdict, score], api_name=f"quiz_answer_{i + 1}")

    return {f"classroom.{k}": v for k, v in {"subject": subject, "kind": kind, "next": new, "shown": shown,
                                              "verdict": verdict}.items()}

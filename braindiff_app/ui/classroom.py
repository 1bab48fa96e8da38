"""Classroom mode: large images and a quiz built on the 2-way identification idea.

A question shows one reconstruction and four seen images; the class guesses which one the person saw. The quiz
only reads bundles, so it runs on any laptop with no GPU.
"""

from __future__ import annotations

import json
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
        if not bundle.decoded:
            raise ValueError(text.QUIZ_NOT_DECODED.format(bundle=bundle.name))
        if bundle.n_trials < N_CHOICES:
            raise ValueError(f"bundle: the quiz needs at least {N_CHOICES} trials, {bundle.name} has "
                             f"{bundle.n_trials}.")
        rng = np.random.default_rng([int(round_index), bundle.n_trials])
        trial = int(rng.integers(bundle.n_trials))
        others = rng.choice(np.delete(np.arange(bundle.n_trials), trial), N_CHOICES - 1, replace=False)
        answer = int(rng.integers(N_CHOICES))
        shown = [int(i) for i in others]
        shown.insert(answer, trial)
        problems = [p for p in [bundle.image_problem(trial, kind)] + [bundle.image_problem(i, "ground_truth")
                                                                           for i in shown] if p]
        if problems:
            raise ValueError(problems[0])
        return Question(
            bundle=bundle.key,
            trial=trial,
            reconstruction=str(bundle.image_path(trial, kind)),
            candidates=[str(bundle.image_path(i, "ground_truth")) for i in shown],
            answer=answer,
        )

    def odds(self, bundle_name: str | None, kind: str = "final") -> str:
        """The quiz's difficulty for ``kind`` of the bundle: its stored 4-way identification (``CLIP 4-way``, or
        ``demo-CLIP 4-way`` on the demo tier), the chance that CLIP's embedding alone answers a question right.
        Empty when the bundle has none (not evaluated) or cannot be opened."""
        try:
            table = self.state.bundle(bundle_name).metrics.get(kind, {}) if bundle_name else {}
        except ValueError:
            return ""
        for name in ("CLIP 4-way", "demo-CLIP 4-way"):
            values = np.asarray(table.get(name, []), dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                return text.QUIZ_ODDS.format(metric=name.removesuffix(" 4-way"), p=100 * values.mean(), n=values.size)
        return ""

    def answer(self, question: Question, choice: int, score: Score, round_index: int) -> tuple[bool, str]:
        """Check a choice; a round counts once towards the score. Returns (right, verdict): "Right!", "Not this one:
        ...", or, for a later vote in a round already answered, "Already answered: ..." (the score unchanged; the
        app shows ``score.line()`` apart)."""
        if not 0 <= int(choice) < N_CHOICES:
            raise ValueError(f"choice: expected 0..{N_CHOICES - 1}, got {choice}.")
        right = int(choice) == question.answer
        if round_index in score.answered:  # a second vote changes nothing: the answer is already shown
            return right, text.QUIZ_ALREADY.format(n=question.answer + 1)
        score.answered.add(round_index)
        score.asked += 1
        score.right += int(right)
        return right, text.QUIZ_RIGHT if right else text.QUIZ_WRONG.format(n=question.answer + 1)


# Projector mode: the Classroom's own column fills the screen (the browser's Fullscreen API, from a click), its
# controls hidden, the decoded image at least 60% of the screen's height and the four choices two by two beside it.
# The button says which way it goes ("Full screen" / "Leave full screen").
FULLSCREEN_JS = """() => {
  const room = document.getElementById('classroom');
  if (!room) return;
  const button = document.getElementById('classroom-fullscreen');
  if (room.classList.contains('bd-projector')) {
    room.classList.remove('bd-projector');
    if (button) button.textContent = __ENTER__;
    if (document.fullscreenElement) document.exitFullscreen();
  } else {
    room.classList.add('bd-projector');
    if (button) button.textContent = __LEAVE__;
    if (room.requestFullscreen) room.requestFullscreen().catch(() => {});
  }
}""".replace("__ENTER__", json.dumps(text.QUIZ_FULLSCREEN)).replace("__LEAVE__", json.dumps(text.QUIZ_LEAVE_FULLSCREEN))

# Keys while the Classroom is on screen: 1-4 vote, N asks the next question, F toggles projector mode.
KEYS_JS = """() => {
  if (window.bdQuizKeys) return;
  window.bdQuizKeys = true;
  document.addEventListener('fullscreenchange', () => {
    const room = document.getElementById('classroom');
    if (room && !document.fullscreenElement) {
      room.classList.remove('bd-projector');
      const button = document.getElementById('classroom-fullscreen');
      if (button) button.textContent = __ENTER__;
    }
  });
  document.addEventListener('keydown', (event) => {
    const room = document.getElementById('classroom');
    if (!room || room.offsetParent === null && !room.classList.contains('bd-projector')) return;
    const target = event.target;
    if (target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName))) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    let id = null;
    if (['1', '2', '3', '4'].includes(event.key)) id = 'classroom-vote-' + event.key;
    else if (event.key === 'n' || event.key === 'N') id = 'classroom-next';
    else if (event.key === 'f' || event.key === 'F') id = 'classroom-fullscreen';
    // Esc leaves projector mode also where the browser refused full screen (kiosk, an embedding page); in full
    // screen the browser takes Esc itself and 'fullscreenchange' above leaves the mode.
    else if (event.key === 'Escape' && room.classList.contains('bd-projector') && !document.fullscreenElement)
      id = 'classroom-fullscreen';
    const button = id && document.getElementById(id);
    if (button) { event.preventDefault(); button.click(); }
  });
}""".replace("__ENTER__", json.dumps(text.QUIZ_FULLSCREEN))

CSS = """
.bd-panel img, .classroom-big img, .classroom-choice img {
  width: 100% !important; height: 100% !important; object-fit: contain; image-rendering: pixelated;
}
.bd-pixelated img { image-rendering: pixelated; }
.classroom-big img { max-height: 60vh !important; }
.classroom-choice img { max-height: 28vh !important; }
.classroom-choice.bd-right { outline: 6px solid #16a34a; outline-offset: -6px; border-radius: 8px; }
.classroom-choice.bd-wrong { outline: 6px dashed #dc2626; outline-offset: -6px; border-radius: 8px; opacity: 0.75; }
#classroom-score { font-size: 1.6rem; font-weight: 700; }
#classroom.bd-projector {
  position: fixed; inset: 0; z-index: 1000; background: var(--body-background-fill); padding: 1.5vh 1.5vw;
  overflow: hidden; margin: 0; max-width: none;
}
#classroom.bd-projector .bd-quiz-controls, #classroom.bd-projector .bd-quiz-intro { display: none !important; }
#classroom.bd-projector #classroom-stage { flex-wrap: nowrap !important; gap: 2vw; align-items: flex-start; }
#classroom.bd-projector #classroom-shown {
  flex: 0 0 auto !important; width: 84vh !important; min-width: 0 !important;
}
#classroom.bd-projector #classroom-shown, #classroom.bd-projector #classroom-shown > div,
#classroom.bd-projector #classroom-shown .image-container { height: 88vh !important; max-height: none !important; }
#classroom.bd-projector .classroom-big img { max-height: 84vh !important; height: 84vh !important; }
#classroom.bd-projector #classroom-side { flex: 1 1 0 !important; min-width: 0 !important; }
#classroom.bd-projector #classroom-votes { flex-wrap: nowrap !important; }
/* the four choices two by two: each about twice as large as in one row beside the decoded image */
#classroom.bd-projector #classroom-choices {
  display: grid !important; grid-template-columns: 1fr 1fr; gap: 1vh 1vw;
}
#classroom.bd-projector .classroom-choice { min-width: 0 !important; }
#classroom.bd-projector .classroom-choice, #classroom.bd-projector .classroom-choice > div,
#classroom.bd-projector .classroom-choice .image-container { height: 27vh !important; max-height: none !important; }
#classroom.bd-projector .classroom-choice img { max-height: 25vh !important; height: 25vh !important; }
#classroom.bd-projector .classroom-choice label { font-size: 1.6rem; }
#classroom.bd-projector #classroom-votes button { font-size: 2rem; min-height: 6vh; min-width: 0; }
#classroom.bd-projector #classroom-score { font-size: min(3rem, 7vh); line-height: 1.1; }
#classroom.bd-projector #classroom-verdict { font-size: min(2rem, 4.5vh); }
#classroom.bd-projector #classroom-side { gap: 1vh !important; }
/* a short screen (a laptop at 150% zoom: 960 x 600 CSS pixels): the score stays on screen below the verdict */
@media (max-height: 760px) {
  #classroom.bd-projector #classroom-votes button { font-size: min(2rem, 4.5vh); min-height: 5vh; }
  #classroom.bd-projector #classroom-verdict { font-size: min(2rem, 3.4vh); }
}
#classroom.bd-projector #classroom-verdict .prose,
#classroom.bd-projector #classroom-score .prose { font-size: inherit; }
#classroom.bd-projector .bd-projector-help { display: block !important; }
.bd-projector-help { display: none !important; }
"""


def build_classroom_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the Classroom tab inside ``app``; returns its components keyed ``classroom.<name>``.

    Keys (while the tab is on screen): 1-4 vote, N next question, F projector mode (Esc leaves it).
    """
    handlers = QuizHandlers(state)
    choices = state.choices(decoded_only=True)  # the quiz asks what a brain saw

    def default(choices: list[tuple[str, str]]) -> str | None:  # the app's default is decoded when any bundle is
        return state.default_bundle if choices else None

    with gr.Tab(text.CLASSROOM_TAB, id="classroom"), gr.Column(elem_id="classroom"):
        gr.Markdown(text.QUIZ_INTRO, elem_classes="bd-quiz-intro")
        with gr.Row(elem_classes="bd-quiz-controls"):
            subject = gr.Dropdown(choices=choices, value=default(choices), label=text.SUBJECT, scale=3)
            kind = gr.Radio([(text.QUIZ_FINAL, "final"), (text.QUIZ_VDVAE, "vdvae")], value="final",
                            label=text.QUIZ_SHOW, scale=2)
        odds = gr.Markdown(handlers.odds(default(choices)), elem_classes="bd-quiz-intro",
                           elem_id="classroom-odds")
        with gr.Row(elem_classes="bd-quiz-bar"):
            new = gr.Button(text.QUIZ_NEXT, variant="primary", scale=1, elem_id="classroom-next")
            fullscreen = gr.Button(text.QUIZ_FULLSCREEN, scale=1, elem_id="classroom-fullscreen")
        round_index = gr.State(0)
        question = gr.State(None)
        score = gr.State(lambda: Score())
        with gr.Row(elem_id="classroom-stage"):
            shown = gr.Image(label=text.QUIZ_RECONSTRUCTION, type="filepath", interactive=False, height=420,
                             elem_classes="classroom-big", buttons=[], elem_id="classroom-shown", min_width=300,
                             alt_text=text.QUIZ_RECONSTRUCTION)
            with gr.Column(elem_id="classroom-side", min_width=300):
                with gr.Row(elem_id="classroom-choices"):
                    candidates = [gr.Image(label=f"{i + 1}", type="filepath", interactive=False, height=200,
                                           elem_classes="classroom-choice", buttons=[], min_width=80,
                                           elem_id=f"classroom-choice-{i + 1}",
                                           alt_text=text.QUIZ_CHOICE_ALT.format(n=i + 1))
                                  for i in range(N_CHOICES)]
                with gr.Row(elem_id="classroom-votes"):
                    buttons = [gr.Button(f"{i + 1}", size="lg", min_width=60, elem_id=f"classroom-vote-{i + 1}")
                               for i in range(N_CHOICES)]
                verdict = gr.Markdown(text.QUIZ_START, elem_id="classroom-verdict")
                score_line = gr.Markdown("", elem_id="classroom-score")
                gr.Markdown(text.QUIZ_KEYS, elem_classes="bd-projector-help")

    def ask(bundle_name, kind_value, current_round):
        if not bundle_name:
            raise gr.Error(text.toast(text.no_bundle(state.settings.tier, state.settings.bundle_dirs)),
                           print_exception=False)
        next_round = int(current_round) + 1
        try:
            q = handlers.question(bundle_name, next_round, kind_value)
        except ValueError as exc:
            raise gr.Error(text.toast(str(exc)), print_exception=False) from None
        return [next_round, q, q.reconstruction, *q.candidates, text.QUIZ_ASK]

    def unmark():
        return ([gr.update(elem_classes=["classroom-choice"]) for _ in range(N_CHOICES)]
                + [gr.update(variant="secondary") for _ in range(N_CHOICES)])

    def choose(choice: int):
        def handler(q, current_round, current_score):
            unchanged = [gr.update()] * (2 * N_CHOICES)
            if q is None:  # a vote (key or button) before the first question: say so, leave the panels alone
                return [text.QUIZ_NO_QUESTION, current_score, gr.update(), *unchanged]
            first_vote = int(current_round) not in current_score.answered
            _, message = handlers.answer(q, choice, current_score, int(current_round))
            if not first_vote:  # the first vote stands, its marks stay
                return [message, current_score, gr.update(), *unchanged]
            marks = []
            for i in range(N_CHOICES):
                classes = ["classroom-choice"]
                if i == q.answer:
                    classes.append("bd-right")
                elif i == choice:
                    classes.append("bd-wrong")
                marks.append(gr.update(elem_classes=classes))
            # the right answer's button in the accent colour, a wrong vote's in red (as its image's dashed outline)
            variants = [gr.update(variant="primary" if i == q.answer else "stop" if i == choice else "secondary")
                        for i in range(N_CHOICES)]
            return [message, current_score, current_score.line(), *marks, *variants]
        return handler

    outputs = [round_index, question, shown, *candidates, verdict]
    new.click(ask, [subject, kind, round_index], outputs, api_name="quiz_next", show_progress_on=[shown]).then(
        unmark, None, [*candidates, *buttons], api_name=False)
    def switch(bundle_name, kind_value, current_round, q):
        """Another subject or kind: the question on screen was the old one's, so a new one; the score restarts."""
        if q is None or not bundle_name:
            return [gr.update()] * (len(outputs) + 2)
        return [*ask(bundle_name, kind_value, current_round), Score(), ""]

    for control in (subject, kind):
        control.change(handlers.odds, [subject, kind], [odds], api_name=False).then(
            switch, [subject, kind, round_index, question], [*outputs, score, score_line], api_name=False,
            show_progress_on=[shown]).then(unmark, None, [*candidates, *buttons], api_name=False)
    fullscreen.click(None, js=FULLSCREEN_JS, api_name=False)  # browser-side only: nothing for an API client
    for i, button in enumerate(buttons):
        button.click(choose(i), [question, round_index, score], [verdict, score, score_line, *candidates, *buttons],
                     api_name=f"quiz_answer_{i + 1}")

    def classroom_picker(current: str | None):
        """After a rescan (:meth:`AppState.rescan`): the new choices, the same bundle when still there."""
        choices = state.choices(decoded_only=True)
        return [gr.update(choices=choices, value=state.key_of(current) or default(choices))]

    state.pickers.append(([subject], [subject], classroom_picker))  # "Rescan bundles" (Browse) refreshes it

    return {f"classroom.{k}": v for k, v in {"subject": subject, "kind": kind, "next": new, "shown": shown,
                                              "verdict": verdict, "score": score_line}.items()}

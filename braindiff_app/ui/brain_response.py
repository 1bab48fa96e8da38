"""The Brain response tab: an image's predicted brain response, decoded back (the round trip), voxel tuning and
enhance / suppress.

Handlers live in :class:`BrainResponseHandlers` (Python values in and out); the models (the ROI studio's pipeline,
atlases and regressors, plus each subject's encoder, :mod:`braindiff_app.encoding`) load once, when the tab is first
used. Test images come from the subject's bundle (its seen images, matched to the encoder's test images by NSD id);
the measured and (demo) true responses to them from the encoder file's held-out evaluation.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image, UnidentifiedImageError

from braindiff_app.data.atlas import CATEGORY_REGIONS, VISUAL_REGIONS
from braindiff_app.data.flatmap import draw_values
from braindiff_app.encoding import EncodingModels, load_encoding_models, subjects_with_encoders
from braindiff_app.regression.workspace import subjects_with_regressors
from braindiff_app.roi import load_subject_flatmap, roi_settings
from braindiff_app.stage2 import Stage2Settings
from braindiff_app.ui import bounded, text
from braindiff_app.ui.state import AppState

__all__ = ["BrainResponseHandlers", "build_brain_response_tab", "STEER_DIALS"]

#: Dial values generated for the activation plot (the user's own value is added).
STEER_DIALS = (-1.0, -0.5, 0.0, 0.5, 1.0)
#: Regions with a bar (those a subject has).
BAR_REGIONS = VISUAL_REGIONS + CATEGORY_REGIONS
_STOP = set("a an the of and on in with at to is are that says there this next by its it his her from one two "
            "three some".split())


class BrainResponseHandlers:
    """The tab's actions, independent of gradio."""

    def __init__(self, state: AppState, roi=None) -> None:
        """``roi``: the ROI studio's handlers (:class:`~braindiff_app.ui.roi_handlers.ROIHandlers`), whose models,
        encoders and flatmaps this tab shares (one pipeline and one set of regressors in the app); None: its own."""
        self.state = state
        self.roi = roi
        self.settings, self.committed = roi_settings(state.settings)
        self._models: EncodingModels | None = None
        self._lock = threading.Lock()
        self._cache_lock = threading.RLock()  # the test images and their predictions are computed once
        self._tests: dict[str, tuple[np.ndarray, np.ndarray, list[list[str]]]] = {}
        self._test_predictions: dict[str, np.ndarray] = {}

    def models(self) -> EncodingModels:
        if self.roi is not None:
            return self.roi.encoders()
        with self._lock:
            if self._models is None:
                self._models = load_encoding_models(self.settings)
            return self._models

    def listed_subjects(self) -> list[str]:
        """Subjects with an encoder and regressors, found without loading a model."""
        have = set(subjects_with_regressors(self.settings))
        return [s for s in subjects_with_encoders(self.settings) if s in have]

    def stage2(self) -> dict:
        return Stage2Settings.for_tier(self.settings.tier).to_json()

    def flatmap(self, subject: str) -> tuple[np.ndarray, np.ndarray]:
        if self.roi is not None:
            return self.roi.flatmap(subject)  # cached there
        return load_subject_flatmap(self.settings, self.models().roi.atlases[subject])

    def test_images(self, subject: str) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """The encoder's test images found in the subject's bundle: positions (into the encoder's evaluation rows),
        images (n, h, w, 3) uint8 and captions, in evaluation order. Empty when no bundle holds them."""
        with self._cache_lock:
            return self._test_images(subject)

    def _test_images(self, subject: str) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        if subject not in self._tests:
            ids = self.models().encoder(subject).evaluation.get("test_nsd_ids", np.zeros(0, np.int64))
            bundle = next((b for b in self.state.bundles if b.subject == subject and b.tier == self.settings.tier
                           and b.decoded), None)
            rows, images, captions = [], [], []
            if bundle is not None:
                by_id = {int(t.trial_id): i for i, t in enumerate(bundle.trials)}
                for row, nsd_id in enumerate(ids.tolist()):
                    if nsd_id in by_id:
                        rows.append(row)
                        images.append(bundle.image(by_id[nsd_id], "ground_truth"))
                        captions.append(list(bundle.trials[by_id[nsd_id]].captions))
            self._tests[subject] = (np.asarray(rows, dtype=np.int64),
                                    np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8), captions)
        return self._tests[subject]

    def test_predictions(self, subject: str) -> np.ndarray:
        """The encoder's predictions for every test image (n_test, n_voxels), or ValueError without all of them."""
        with self._cache_lock:
            return self._predict_tests(subject)

    def _predict_tests(self, subject: str) -> np.ndarray:
        if subject not in self._test_predictions:
            rows, images, _ = self.test_images(subject)
            n_test = len(self.models().encoder(subject).evaluation["test_measured"])
            if len(rows) != n_test:
                raise ValueError(text.BR_NO_TEST_IMAGES.format(subject=subject))
            self._test_predictions[subject] = self.models().predict(subject, images)
        return self._test_predictions[subject]

    def read_upload(self, path: str | None) -> np.ndarray | None:
        """An uploaded file as (h, w, 3) uint8; ValueError naming the file when it is not an image."""
        if not path:
            return None
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except Image.DecompressionBombError:
            raise ValueError(text.BR_TOO_LARGE.format(name=Path(path).name, limit=2 * Image.MAX_IMAGE_PIXELS)) from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise ValueError(text.BR_BAD_UPLOAD.format(name=Path(path).name)) from None

    def respond(self, subject: str, test_index: int | None, upload: str | None, seed: int = 0) -> dict:
        """Predict the response to the uploaded image (or test image ``test_index``) and decode it back.

        Returns
        -------
        dict
            ``input``, ``predicted`` (flatmap), ``reference`` (flatmap of the true (demo) or measured response of a
            test image, else None), ``reference_label``, ``bars`` (list of (region, mean z)), ``vdvae``, ``final``,
            ``summary`` (markdown), ``response`` (n_voxels,).
        """
        models = self.models()
        image = self.read_upload(upload)
        row = None
        if image is None:
            if test_index is None:
                raise ValueError(text.BR_NO_IMAGE)
            rows, images, _ = self.test_images(subject)
            if not len(rows):
                raise ValueError(text.BR_NO_TEST_IMAGES.format(subject=subject))
            if not 0 <= int(test_index) < len(rows):
                raise ValueError(text.BR_BAD_TEST_INDEX.format(last=len(rows) - 1, got=test_index))
            image, row = images[int(test_index)], int(rows[int(test_index)])
        trip = models.round_trip(subject, image, seed=int(seed or 0), stage2=self.stage2())
        flat, lookup = self.flatmap(subject)
        limit = float(np.percentile(np.abs(trip.response), 98)) or 1.0
        ev = models.encoder(subject).evaluation
        reference, label, ref_text = None, text.BR_NO_REFERENCE, ""
        if row is not None:
            key = "test_true" if "test_true" in ev else "test_measured"
            values = ev[key][row].astype(np.float32)
            label = text.BR_TRUE if key == "test_true" else text.BR_MEASURED
            reference = draw_values(flat, lookup, values, float(np.percentile(np.abs(values), 98)) or 1.0)
            r = float(np.corrcoef(trip.response, values)[0, 1])
            ref_text = text.BR_SUMMARY_REF.format(what="true" if key == "test_true" else "measured", r=r)
        atlas = models.roi.atlases[subject]
        bars = [(r, float(trip.response[atlas.regions[r]].mean())) for r in BAR_REGIONS if r in atlas.regions]
        true = text.BR_SUMMARY_TRUE.format(median=float(np.median(ev["true_accuracy"]))) \
            if "true_accuracy" in ev else ""
        summary = text.BR_SUMMARY.format(subject=subject, median=float(np.median(ev["accuracy"])), true=true,
                                         reference=ref_text)
        return {"input": image, "predicted": draw_values(flat, lookup, trip.response, limit), "reference": reference,
                "reference_label": label, "bars": bars, "vdvae": trip.vdvae, "final": trip.final,
                "summary": summary, "response": trip.response}

    def voxel_at(self, subject: str, x: int, y: int) -> int:
        """The voxel under flatmap pixel (x, y) (the ROI brush's lookup); ValueError off the cortex."""
        _, lookup = self.flatmap(subject)
        if not (0 <= int(y) < lookup.shape[0] and 0 <= int(x) < lookup.shape[1]) or lookup[int(y), int(x)] < 0:
            raise ValueError(text.BR_OFF_CORTEX.format(subject=subject))
        return int(lookup[int(y), int(x)])

    def tuning(self, subject: str, x: int, y: int) -> tuple[str, list, list]:
        """Markdown about the voxel under (x, y) and its top test images (measured, predicted) with captions."""
        voxel = self.voxel_at(subject, x, y)
        tuning = self.models().voxel_tuning(subject, voxel, self.test_predictions(subject))
        rows, images, captions = self.test_images(subject)
        where = {int(r): i for i, r in enumerate(rows.tolist())}
        measured = [(images[where[int(r)]], captions[where[int(r)]][0]) for r in tuning.top_measured]
        predicted = [(images[where[int(r)]], captions[where[int(r)]][0]) for r in tuning.top_predicted]
        order = np.argsort(-self.test_predictions(subject)[:, voxel])
        words = preferred_words([captions[where[int(r)]] for r in order[:10]], captions)
        true = text.BR_TUNING_TRUE.format(r=tuning.true_accuracy) if tuning.true_accuracy is not None else ""
        md = text.BR_TUNING_TEXT.format(voxel=voxel, regions=", ".join(tuning.regions) or text.BR_NO_REGION,
                                        accuracy=tuning.accuracy, true=true,
                                        words=", ".join(words) or text.BR_WORDS_NONE)
        return md + "\n\n" + text.BR_WORDS_NOTE, measured, predicted

    def steer(self, subject: str, test_index: int | None, upload: str | None, region: str, dial: float,
              seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """The image regenerated at ``dial`` and the predicted activation of ``region`` at each dial value."""
        image = self.read_upload(upload)
        if image is None:
            if test_index is None:
                raise ValueError(text.BR_NO_IMAGE)
            _, images, _ = self.test_images(subject)
            if not 0 <= int(test_index) < len(images):
                raise ValueError(text.BR_BAD_TEST_INDEX.format(last=len(images) - 1, got=test_index))
            image = images[int(test_index)]
        dials = sorted({*STEER_DIALS, float(dial)})
        finals, activation = self.models().steer(subject, image, region, dials, seed=int(seed or 0),
                                                 stage2=self.stage2())
        return finals[dials.index(float(dial))], list(zip(dials, activation.tolist(), strict=True))


def bars_image(bars: list[tuple[str, float]], width: int = 900, height: int = 240) -> np.ndarray:
    """A bar chart of (region, value) pairs: red bars above zero, blue below; (height, width, 3) uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_subplot()
    names, values = [b[0] for b in bars], [b[1] for b in bars]
    ax.bar(names, values, color=["#b2182b" if v >= 0 else "#2166ac" for v in values])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(text.BR_BARS_AXIS)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def preferred_words(top: list[list[str]], everything: list[list[str]], n: int = 6) -> list[str]:
    """Words over-represented in the captions ``top`` relative to all ``everything`` (smoothed log ratio)."""
    def counts(groups):
        return Counter(w for group in groups for c in group for w in set(re.findall(r"[a-z]+", c.lower()))
                       if w not in _STOP and len(w) > 2)

    top_counts, all_counts = counts(top), counts(everything)
    n_top, n_all = max(sum(len(g) for g in top), 1), max(sum(len(g) for g in everything), 1)
    score = {w: np.log((c + 1) / n_top) - np.log((all_counts[w] + 1) / n_all) for w, c in top_counts.items() if c >= 2}
    return [w for w, s in sorted(score.items(), key=lambda kv: -kv[1]) if s > 0][:n]


def build_brain_response_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the Brain response tab inside ``app``; returns its components keyed ``brain.<name>``."""
    import pandas as pd

    handlers = BrainResponseHandlers(state, roi=getattr(app, "braindiff_roi", None))
    subjects = handlers.listed_subjects()
    with gr.Tab(text.BR_TAB, id="brain") as tab:
        gr.Markdown(text.BR_INTRO)
        status = gr.Markdown(text.BR_NO_MODELS if not subjects else "")
        with gr.Row():
            subject = gr.Dropdown(text.subject_choices(subjects), value=subjects[0] if subjects else None,
                                  label=text.SUBJECT, scale=1)
            test_index = bounded.Number(0, precision=0, minimum=0, label=text.BR_TEST_IMAGE, scale=1,
                                        elem_id="br-test-image")
            seed = bounded.Number(0, precision=0, minimum=0, label=text.ROI_SEED, scale=1, elem_id="br-seed")
            upload = gr.File(label=text.BR_UPLOAD, type="filepath", scale=2, height=120)
            run = gr.Button(text.BR_RUN, variant="primary", scale=1)
        summary = gr.Markdown()
        with gr.Row():
            shown = gr.Image(label=text.BR_INPUT, interactive=False, format="png", height=256, elem_classes="bd-panel")
            vdvae = gr.Image(label=text.BR_VDVAE, interactive=False, format="png", height=256, elem_classes="bd-panel")
            final = gr.Image(label=text.BR_FINAL, interactive=False, format="png", height=256, elem_classes="bd-panel")
        with gr.Row():
            predicted = gr.Image(label=text.BR_PREDICTED, interactive=False, format="png", height=420,
                                 elem_classes="bd-map")
            reference = gr.Image(label=text.BR_TRUE, interactive=False, format="png", height=420,
                                 elem_classes="bd-map")
        bars = gr.Image(label=text.BR_BARS, interactive=False, format="png", height=240)
        gr.Markdown(f"### {text.BR_TUNING}")
        tuning_md = gr.Markdown(text.BR_TUNING_HINT)
        with gr.Row():
            top_measured = gr.Gallery(label=text.BR_TOP_MEASURED, columns=6, rows=1, height=180, format="png",
                                      object_fit="contain", allow_preview=False)
            top_predicted = gr.Gallery(label=text.BR_TOP_PREDICTED, columns=6, rows=1, height=180, format="png",
                                       object_fit="contain", allow_preview=False)
        gr.Markdown(f"### {text.BR_STEER}\n{text.BR_STEER_NOTE}")
        with gr.Row():
            region = gr.Dropdown(list(BAR_REGIONS), value="faces", label=text.BR_REGION, scale=1)
            dial = bounded.Slider(-1, 1, value=0.5, step=0.25, label=text.BR_DIAL, scale=2, elem_id="br-dial")
            steer_run = gr.Button(text.BR_STEER_RUN, scale=1)
        with gr.Row():
            steered = gr.Image(label=text.BR_STEERED, interactive=False, format="png", height=256,
                               elem_classes="bd-panel")
            curve = gr.LinePlot(pd.DataFrame({"dial": [], "activation": []}), x="dial", y="activation",
                                title=text.BR_STEER_PLOT, height=256)
        # The voxel-tuning endpoint for API clients (a click on the flatmap calls the same handler).
        x_in, y_in = gr.Number(visible=False, precision=0), gr.Number(visible=False, precision=0)
        tuning_button = gr.Button(visible=False)

    def on_run(subject_value, index, upload_value, seed_value, progress=gr.Progress()):
        if not subject_value:
            raise gr.Error(text.toast(text.BR_NO_MODELS))
        try:
            progress(0, desc=text.BR_RUNNING)
            out = handlers.respond(subject_value, index, upload_value, seed_value)
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
            raise gr.Error(text.toast(str(exc))) from None
        return (out["summary"], out["input"], out["vdvae"], out["final"], out["predicted"],
                gr.update(value=out["reference"], label=out["reference_label"]), bars_image(out["bars"]))

    def on_click(subject_value, evt: gr.SelectData):
        # A click is exploration: a miss (off the cortex) is said in place, not as an error on every panel.
        try:
            x, y = evt.index
            return handlers.tuning(subject_value, int(x), int(y))
        except (ValueError, TypeError, FileNotFoundError) as exc:
            return f"_{exc}_", [], []

    def tuning_api(subject_value, x, y):
        try:
            return handlers.tuning(subject_value, int(x), int(y))
        except (ValueError, TypeError, FileNotFoundError) as exc:
            raise gr.Error(text.toast(str(exc))) from None

    def on_steer(subject_value, index, upload_value, region_value, dial_value, seed_value):
        if not subject_value:
            raise gr.Error(text.toast(text.BR_NO_MODELS))
        try:
            image, points = handlers.steer(subject_value, index, upload_value, region_value, float(dial_value),
                                           seed_value)
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
            raise gr.Error(text.toast(str(exc))) from None
        return image, pd.DataFrame(points, columns=["dial", "activation"])

    def on_open(subject_value, index, upload_value, seed_value, summary_value, progress=gr.Progress()):
        """The tab's first opening runs the loop on the chosen test image, so it opens on an example rather than
        nine empty panels, and gives the test-image box its last index as maximum; later openings keep what is
        shown. A failure is said in the summary line."""
        if summary_value or not subject_value:
            return [gr.update()] * (len(outputs) + 1)
        try:
            shown_now = list(on_run(subject_value, index, upload_value, seed_value, progress))
        except gr.Error as exc:
            return [f"_{exc.message}_", *[gr.update()] * len(outputs)]
        n = len(handlers.test_images(subject_value)[0])
        return [*shown_now, gr.update(maximum=n - 1) if n else gr.update()]

    outputs = [summary, shown, vdvae, final, predicted, reference, bars]
    tab.select(on_open, [subject, test_index, upload, seed, summary], [*outputs, test_index], api_name=False,
               concurrency_id="brain_models", concurrency_limit=1, show_progress_on=[summary])
    # Progress and a failure show on the summary line alone (the toast says why); the panels keep what they had.
    run.click(on_run, [subject, test_index, upload, seed], outputs, api_name="brain_response",
              concurrency_id="brain_models", concurrency_limit=1, show_progress_on=[summary])
    # Enter in the test-image box runs it too: the panels showed the previous image with no hint to press the button
    def on_enter(subject_value, index, seed_value, progress=gr.Progress()):  # the typed index, not an upload
        return on_run(subject_value, index, None, seed_value, progress)

    test_index.submit(on_enter, [subject, test_index, seed], outputs, api_name=False,
                      concurrency_id="brain_models", concurrency_limit=1, show_progress_on=[summary])
    predicted.select(on_click, [subject], [tuning_md, top_measured, top_predicted], api_name=False,
                     concurrency_id="brain_models", concurrency_limit=1)
    tuning_button.click(tuning_api, [subject, x_in, y_in], [tuning_md, top_measured, top_predicted],
                        api_name="voxel_tuning")
    steer_run.click(on_steer, [subject, test_index, upload, region, dial, seed], [steered, curve],
                    api_name="brain_steer", concurrency_id="brain_models", concurrency_limit=1,
                    show_progress_on=[steered])
    del status
    return {f"brain.{k}": v for k, v in {"subject": subject, "test_index": test_index, "upload": upload,
                                          "run": run, "predicted": predicted, "reference": reference,
                                          "vdvae": vdvae, "final": final, "bars": bars, "tuning": tuning_md,
                                          "steered": steered, "curve": curve}.items()}

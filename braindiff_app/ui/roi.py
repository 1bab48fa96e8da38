"""The ROI studio: paint or combine brain regions on the flatmap and see the images they "prefer".

Handlers live in :class:`ROIHandlers` (Python values in and out); models load once, when the tab is first opened
(or on the first API call), and are shared by every session. A recipe (regions, weights, painted voxels, seed,
stage-2 settings) is kept for each experiment and can be downloaded as JSON that re-creates it (also from the CLI:
``braindiff roi --recipe FILE``). Recipe files are named by the recipe's content id, in one folder per browser
session; folders unused for :data:`RECIPE_FOLDER_TTL` seconds are removed, and the whole temp folder at exit.

Concurrent Generates run together: each request's features are predicted in its own thread, then a
:class:`~braindiff_app.ui._batching.MicroBatcher` runs the requests that share stage-2 settings as one pipeline call
(each image depends only on its own seed, so the images are those of single calls). Requests are bounded: recipe
steps at :data:`MAX_STEPS_FACTOR` times the tier's default, canvas layers at :data:`MAX_CANVAS_PIXELS` (checked from
the image header, before decoding).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from braindiff_app.data.atlas import ALL_REGIONS, CATEGORY_REGIONS, ECCENTRICITY_REGIONS, VISUAL_REGIONS
from braindiff_app.encoding import EncodingModels, Ranked, load_encoding_models, subjects_with_encoders
from braindiff_app.pipeline import ReconstructionOutput
from braindiff_app.protocol import DEFAULT_PROTOCOL
from braindiff_app.regression import FEATURE_NAMES, subjects_with_regressors
from braindiff_app.roi import Recipe, ROIModels, load_roi_models, load_subject_flatmap, painted_voxels, roi_settings
from braindiff_app.stage2 import TIER_DIFFUSION_STEPS, Stage2Settings
from braindiff_app.ui import text
from braindiff_app.ui._batching import MicroBatcher
from braindiff_app.ui.state import AppState

__all__ = ["ROIHandlers", "ROIResult", "build_roi_tab", "MAX_CANVAS_PIXELS", "MAX_STEPS_FACTOR", "ROI_CONCURRENCY"]

PATTERN_COLOURS = {1: (220, 40, 40), -1: (40, 90, 230)}  # positive voxels red, negative blue
HISTORY_SIZE = 24  # experiments kept per session (each Generate re-sends the gallery: bounded memory and work)
#: Recipes run in the app take at most this many times the tier's default DDIM steps (the CLI takes any count).
MAX_STEPS_FACTOR = 2
#: Largest canvas layer (pixels) gradio may decode: the flatmaps are far smaller. PIL refuses images over twice its
#: MAX_IMAGE_PIXELS from the header alone (a 567 KB PNG declaring 12000x12000 once took 2.7 GB and 14 s to decode).
MAX_CANVAS_PIXELS = 4096 * 4096
Image.MAX_IMAGE_PIXELS = min(Image.MAX_IMAGE_PIXELS or MAX_CANVAS_PIXELS, MAX_CANVAS_PIXELS // 2)
#: Generate/replay events the app lets wait on the micro-batcher at once (they run in batches of up to 8).
ROI_CONCURRENCY = 16
#: Recipe session folders unused this long (seconds) are removed.
RECIPE_FOLDER_TTL = 6 * 3600


@dataclass(frozen=True)
class ROIResult:
    """One experiment: its recipe, the stage-1 guess, the final image and the pattern drawn on the flatmap."""

    recipe: Recipe
    vdvae: np.ndarray
    final: np.ndarray
    pattern: np.ndarray | None
    recipe_path: str


class ROIHandlers:
    """The ROI studio's actions, independent of gradio."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._models: ROIModels | None = None
        self._encoders: EncodingModels | None = None
        self.settings, self.committed = roi_settings(state.settings)
        self._flatmaps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        self._out = Path(tempfile.mkdtemp(prefix="braindiff-roi-"))
        # Recipe files go with the handlers, or at the latest when the process exits.
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._out, ignore_errors=True)
        self._last_sweep = time.monotonic()
        self.batcher = MicroBatcher(self._run_batch)

    def models(self) -> ROIModels:
        """The tier's pipeline and every subject's atlas and regressors, loaded once."""
        with self._lock:
            if self._models is None:
                self._models = load_roi_models(self.settings)
            return self._models

    def listed_subjects(self) -> list[str]:
        """Subjects with regressors, then ``average``, found without loading a model (the dropdown's choices when
        the app is built: API clients, which never run the page-load event, are checked against these)."""
        found = subjects_with_regressors(self.settings)
        return [*found, "average"] if found else []

    def subjects(self) -> list[str]:
        """Subjects ready for ROI experiments, then ``average``; empty when none has regressors."""
        try:
            return [*self.models().subjects, "average"]
        except (FileNotFoundError, ValueError):
            return []

    def availability(self, subject: str) -> dict[str, str]:
        """Region -> reason it is unavailable for ``subject`` ("" when available)."""
        models = self.models()
        atlases = models.atlases.values() if subject == "average" else [models.atlases[subject]]
        reasons = {}
        for region in ALL_REGIONS:
            missing = [a.absent[region] for a in atlases if region not in a.regions]
            reasons[region] = "" if len(missing) < len(list(atlases)) else missing[0]
        return reasons

    def flatmap(self, subject: str) -> tuple[np.ndarray, np.ndarray]:
        """The flatmap image (RGBA) and its pixel -> voxel lookup for ``subject`` (subject 1's for the average).

        The demo subject's is committed; an NSD subject's is built from its surfaces on first use (a few seconds,
        then cached on disk). FileNotFoundError (or ValueError for files that do not fit together) when it cannot
        be had: region presets still work.
        """
        models = self.models()
        key = models.subjects[0] if subject == "average" else subject
        if key not in self._flatmaps:
            self._flatmaps[key] = load_subject_flatmap(self.settings, models.atlases[key])
        return self._flatmaps[key]

    def flatmap_problem(self, subject: str) -> str:
        """Why ``subject`` has no flatmap to paint on ("" when it has one)."""
        try:
            self.flatmap(subject)
        except (FileNotFoundError, ValueError) as exc:
            return text.ROI_NO_FLATMAP.format(reason=exc)
        return ""

    def recipe(self, subject: str, weights: dict[str, float], painted_mask: np.ndarray | None,
               painted_weight: float, seed: int) -> Recipe:
        """Build a recipe from the studio's controls; ValueError for an empty selection."""
        regions = {r: float(w) for r, w in weights.items() if w}
        painted: np.ndarray = np.array([], dtype=np.int64)
        if painted_mask is not None and painted_mask.any():
            if subject == "average":
                raise ValueError(text.ROI_PAINT_AVERAGE)
            painted = painted_voxels(painted_mask, self.flatmap(subject)[1])
            if painted.size == 0:
                raise ValueError(text.ROI_PAINT_OFF_CORTEX)
        if not regions and painted.size == 0:
            raise ValueError(text.ROI_EMPTY)
        return Recipe(subject=subject, regions=regions, painted=tuple(painted.tolist()),
                      painted_weight=painted_weight, seed=seed,
                      settings={**Stage2Settings.for_tier(self.settings.tier).to_json(), "tier": self.settings.tier})

    def pattern_image(self, recipe: Recipe) -> np.ndarray | None:
        """The recipe's voxels drawn on the flatmap: red where the weight is positive, blue where negative.

        The pattern is the one the regressors see (:meth:`ROIModels.patterns`); for the average, that of the first
        subject it uses. None when that subject has no flatmap (see :meth:`flatmap_problem`).
        """
        models = self.models()
        patterns = models.patterns(recipe) if recipe.subject == "average" else None
        subject = next(iter(patterns)) if patterns else recipe.subject
        if self.flatmap_problem(subject):
            return None
        weight = (patterns or models.patterns(recipe))[subject]  # (n_voxels,)
        image, lookup = self.flatmap(subject)
        on_voxel = lookup >= 0
        pixel_weight = np.where(on_voxel, weight[np.clip(lookup, 0, None)], 0.0)
        out = image[..., :3].copy()
        for sign, colour in PATTERN_COLOURS.items():
            hit = np.sign(pixel_weight) == sign
            out[hit] = (0.35 * out[hit] + 0.65 * np.array(colour)).astype(np.uint8)
        return out

    def session_folder(self, session: str | None) -> Path:
        """The folder of one browser session's recipe files (``gr.Request.session_hash``; None: a fresh folder).

        The folder name is a digest of the session hash (which the browser sends), so it is always a plain name.
        """
        key = session if session else f"no-session-{uuid.uuid4().hex}"
        return self._out / hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]

    def max_steps(self) -> int:
        """DDIM steps a recipe may ask of the app: :data:`MAX_STEPS_FACTOR` times the tier's default."""
        return MAX_STEPS_FACTOR * TIER_DIFFUSION_STEPS[self.settings.tier]

    def generate(self, recipe: Recipe, callback=None, session: str | None = None) -> ROIResult:
        """Run a recipe through the regressors and both stages; the recipe JSON is saved for download, named by
        the recipe's content id in the session's folder (:meth:`session_folder`), written atomically.

        Concurrent calls share pipeline calls (see the module's notes); the images are those of a call alone.

        Raises
        ------
        ValueError
            A bad recipe, or one asking more DDIM steps than :meth:`max_steps` (run it with ``braindiff roi
            --recipe``).
        """
        if recipe.settings.get("protocol", DEFAULT_PROTOCOL) != DEFAULT_PROTOCOL:
            raise ValueError(f"settings.protocol: the studio runs the braindiff protocol, the recipe asks "
                             f"{recipe.settings['protocol']!r}; run it with `braindiff roi --recipe FILE`.")
        steps, tier = recipe.stage2.num_inference_steps, self.settings.tier
        if steps > self.max_steps():
            raise ValueError(f"settings.num_inference_steps: the app runs at most {self.max_steps()} DDIM steps "
                             f"({MAX_STEPS_FACTOR}x the {tier} tier's {TIER_DIFFUSION_STEPS[tier]}), the recipe "
                             f"asks {steps}; run it with `braindiff roi --recipe FILE`.")
        features = self.models().features(recipe)  # errors of this recipe stay its own
        output = self.batcher.submit(recipe.stage2, (features, recipe.seed, callback))
        self._sweep()
        path = self.session_folder(session) / f"roi-{recipe.subject}-{recipe.content_id}.json"
        recipe.save(path)
        return ROIResult(recipe, output.vdvae[0], output.final[0], self.pattern_image(recipe), str(path))

    # -- best-of-N (issue 18) --------------------------------------------------------------------------------
    def default_candidates(self) -> int:
        """The studio's default number of candidates: 4 when subjects have an encoder, else 1."""
        return 4 if subjects_with_encoders(self.settings) else 1

    def encoders(self) -> EncodingModels:
        """The studio's models with each subject's encoder (sharing the studio's pipeline), loaded once."""
        models = self.models()
        with self._lock:
            if self._encoders is None:
                self._encoders = load_encoding_models(self.settings, roi=models)
            return self._encoders

    def generate_ranked(self, recipe: Recipe, candidates: int, callback=None,
                        session: str | None = None) -> tuple[ROIResult, Ranked]:
        """Best-of-N: the recipe with seeds ``seed ... seed + candidates - 1`` (the recipe's own seed through
        :meth:`generate`, which checks the recipe, then the other N - 1 together in one micro-batch), ranked by the
        encoder's predicted activation of its regions (:meth:`braindiff_app.encoding.EncodingModels.rank`). The
        saved recipe records N and the ranking; the result shows the best candidate."""
        from dataclasses import replace

        first = self.generate(recipe, callback, session)  # checks the recipe; the seed's own image
        if candidates == 1:
            return first, self.encoders().rank(recipe, first.final[None], first.vdvae[None], [recipe.seed])
        features = self.models().features(recipe)
        with ThreadPoolExecutor(candidates - 1) as pool:  # submitted together: one batch
            outs = list(pool.map(lambda k: self.batcher.submit(recipe.stage2, (features, recipe.seed + k, None)),
                                 range(1, candidates)))
        finals = np.stack([first.final, *[o.final[0] for o in outs]])
        vdvaes = np.stack([first.vdvae, *[o.vdvae[0] for o in outs]])
        ranked = self.encoders().rank(recipe, finals, vdvaes, recipe.seed + np.arange(candidates))
        path = self.session_folder(session) / f"roi-{recipe.subject}-{ranked.recipe.content_id}.json"
        ranked.recipe.save(path)
        return replace(first, recipe=ranked.recipe, vdvae=ranked.vdvaes[0], final=ranked.finals[0],
                       recipe_path=str(path)), ranked

    def _run_batch(self, stage2: Stage2Settings, items: list) -> list[ReconstructionOutput]:
        """One pipeline call for requests sharing stage-2 settings: items are (features (1, ...), seed, callback)."""
        features = {name: np.concatenate([f[name] for f, _, _ in items]) for name in FEATURE_NAMES}
        seeds = np.array([seed for _, seed, _ in items], dtype=np.int64)
        callbacks = [cb for *_, cb in items if cb is not None]

        def report(stage: str, done: int, total: int) -> None:
            for cb in callbacks:
                try:
                    cb(stage, done, total)
                except Exception:  # noqa: BLE001 - a closed page's progress bar must not fail the others
                    pass

        out = self.models().pipeline(features=features, seeds=seeds, callback=report if callbacks else None,
                                     **stage2.to_json())
        return [ReconstructionOutput(final=out.final[j:j + 1], vdvae=out.vdvae[j:j + 1],
                                     features={k: v[j:j + 1] for k, v in out.features.items()})
                for j in range(len(items))]

    def _sweep(self, ttl: float = RECIPE_FOLDER_TTL, every: float = 60.0) -> None:
        """Remove session folders unused for ``ttl`` seconds (at most once per ``every`` seconds)."""
        if time.monotonic() - self._last_sweep < every:
            return
        self._last_sweep = time.monotonic()
        cutoff = time.time() - ttl
        for folder in self._out.iterdir():
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass


def _session(request: gr.Request | None) -> str | None:
    """The browser session of an event (None when called outside gradio)."""
    return getattr(request, "session_hash", None) if request is not None else None


def _mask_from_editor(value) -> np.ndarray | None:
    """Painted pixels of a gr.ImageEditor value: any layer pixel with non-zero alpha.

    Raises
    ------
    ValueError
        A layer that is not an RGBA image or larger than :data:`MAX_CANVAS_PIXELS` (API clients send any array).
    """
    if not value or not isinstance(value, dict) or not value.get("layers"):
        return None
    masks = []
    for i, layer in enumerate(value["layers"]):
        if layer is None:
            continue
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4 or layer.size // 4 > MAX_CANVAS_PIXELS:
            raise ValueError(f"canvas layer {i}: expected an RGBA image of at most {MAX_CANVAS_PIXELS} pixels "
                             f"(the flatmap's size), got shape {layer.shape}.")
        masks.append(layer[..., 3] > 0)
    return np.logical_or.reduce(masks) if masks else None


def build_roi_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the ROI studio tab inside ``app``; returns its components keyed ``roi.<name>``."""
    handlers = ROIHandlers(state)
    with gr.Tab(text.ROI_TAB) as tab:
        gr.Markdown(text.ROI_INTRO)
        status = gr.Markdown()
        with gr.Row():
            subject = gr.Dropdown(handlers.listed_subjects(), value=None, label=text.SUBJECT, scale=2)
            seed = gr.Number(0, precision=0, minimum=0, label=text.ROI_SEED, scale=1)
            candidates = gr.Slider(1, 8, value=handlers.default_candidates(), step=1, label=text.ROI_CANDIDATES,
                                   scale=1)
            generate = gr.Button(text.ROI_GENERATE, variant="primary", scale=1)
        with gr.Row():
            with gr.Column(scale=3):
                canvas = gr.ImageEditor(label=text.ROI_CANVAS, type="numpy", sources=(), transforms=(),
                                        brush=gr.Brush(default_size=12, colors=["#ff3030"], color_mode="fixed"),
                                        eraser=gr.Eraser(default_size=16), layers=False, height=520)
                painted_weight = gr.Slider(-1, 1, value=1, step=0.5, label=text.ROI_PAINT_WEIGHT)
            with gr.Column(scale=2):
                sliders = {}
                for title, group in ((text.ROI_VISUAL, VISUAL_REGIONS), (text.ROI_CATEGORY, CATEGORY_REGIONS),
                                     (text.ROI_ECCENTRICITY, ECCENTRICITY_REGIONS)):
                    gr.Markdown(f"**{title}**")
                    with gr.Row():
                        for region in group:
                            sliders[region] = gr.Slider(-1, 1, value=0, step=0.5, label=region, min_width=90)
                clear = gr.Button(text.ROI_CLEAR, size="sm")
        with gr.Row():
            vdvae = gr.Image(label=text.ROI_VDVAE, interactive=False, height=256, elem_classes="bd-panel")
            final = gr.Image(label=text.ROI_FINAL, interactive=False, height=256, elem_classes="bd-panel")
            pattern = gr.Image(label=text.ROI_PATTERN, interactive=False, height=256)
        recipe_file = gr.File(label=text.ROI_RECIPE, interactive=False)
        with gr.Row():
            history = gr.Gallery(label=text.ROI_HISTORY, columns=6, rows=1, height=220, object_fit="contain",
                                 allow_preview=False)
            load_recipe = gr.File(label=text.ROI_LOAD, file_types=[".json"], type="filepath")
        runs = gr.State(list)

    region_names = list(sliders)

    def open_subject(current):
        if current:  # opened before in this page: keep the user's subject, painting and weights
            return [gr.update()] * (3 + len(sliders))
        choices = handlers.subjects()
        if not choices:
            return [gr.update(choices=[], value=None), text.ROI_NO_MODELS, gr.update()] + [gr.update()] * len(sliders)
        value = current if current in choices else choices[0]
        note = text.ROI_COMMITTED if handlers.committed else ""
        return [gr.update(choices=choices, value=value), note, *subject_controls(value)]

    def subject_controls(subject):
        reasons = handlers.availability(subject)
        problem = handlers.flatmap_problem(subject)
        if problem:
            editor = gr.update(value=None, label=f"{text.ROI_CANVAS}: {problem}")
        else:
            editor = gr.update(value={"background": handlers.flatmap(subject)[0], "layers": [], "composite": None},
                               label=text.ROI_CANVAS)
        return [editor] + [gr.update(interactive=not reasons[r], value=0,
                                     info=reasons[r] or None) for r in region_names]

    def on_subject(subject):
        if not subject:
            return [gr.update()] * (1 + len(sliders))
        return subject_controls(subject)

    # gradio passes the gr.Request only to parameters before ``*weights``.
    def run(request: gr.Request, subject, seed_value, painted_value, painted_w, history_runs, *weights,
            progress=gr.Progress()):
        if not subject:
            raise gr.Error(text.ROI_NO_MODELS)
        # ``candidates`` (best-of-N) is the input after the region weights; callers without it get one image.
        n = 1
        if len(weights) == len(region_names) + 1:
            *weights, n = weights
            if isinstance(n, bool) or not isinstance(n, (int, float)) or n != int(n) or not 1 <= n <= 16:
                raise gr.Error(f"candidates: expected an integer from 1 to 16, got {n!r}.")
            n = int(n)
        try:
            recipe = handlers.recipe(subject, dict(zip(region_names, weights, strict=True)),
                                     _mask_from_editor(painted_value), 1.0 if painted_w is None else painted_w,
                                     0 if seed_value is None else seed_value)
            progress(0, desc=text.ROI_RUNNING)
            if n == 1:
                result = handlers.generate(recipe, callback=lambda stage, i, total: progress((i, total), desc=stage),
                                           session=_session(request))
                ranked = []
            else:
                result, best = handlers.generate_ranked(recipe, n, session=_session(request))
                ranked = [(img, text.ROI_RANKED.format(rank=k + 1, score=score, seed=seed), result.recipe_path)
                          for k, (img, score, seed) in enumerate(zip(best.finals, best.scores, best.seeds,
                                                                     strict=True))]
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
            raise gr.Error(str(exc)) from None
        new = ranked or [(result.final, result.recipe.label, result.recipe_path)]
        history_runs = [*history_runs, *new][-HISTORY_SIZE:]
        gallery = [(img, label) for img, label, _ in history_runs]
        return result.vdvae, result.final, result.pattern, result.recipe_path, gallery, history_runs

    def pick(history_runs, evt: gr.SelectData):
        return history_runs[evt.index][2]

    def replay(path, history_runs, request: gr.Request, progress=gr.Progress()):
        if not path:
            return [gr.update()] * 6
        try:
            recipe = Recipe.load(path)
            result = handlers.generate(recipe, callback=lambda stage, i, n: progress((i, n), desc=stage),
                                       session=_session(request))
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
            raise gr.Error(str(exc)) from None
        history_runs = [*history_runs, (result.final, result.recipe.label, result.recipe_path)][-HISTORY_SIZE:]
        return (result.vdvae, result.final, result.pattern, result.recipe_path,
                [(img, label) for img, label, _ in history_runs], history_runs)

    slider_list = [sliders[r] for r in region_names]
    # The models load when the tab is first opened (not on every page load: most visitors never open it), and
    # ``input`` (the user's own choice) rather than ``change``: open_subject's value would otherwise reset the
    # canvas a second time, wiping strokes painted in between.
    tab.select(open_subject, [subject], [subject, status, canvas, *slider_list], api_name=False)
    subject.input(on_subject, [subject], [canvas, *slider_list], api_name="roi_select_subject")
    outputs = [vdvae, final, pattern, recipe_file, history, runs]
    # Generate and replay share the models (the scheduler keeps per-call state): their events wait together on the
    # handlers' micro-batcher, which runs one pipeline call at a time for all of them.
    generate.click(run, [subject, seed, canvas, painted_weight, runs, *slider_list, candidates], outputs,
                   api_name="roi_generate", concurrency_limit=ROI_CONCURRENCY, concurrency_id="roi_models")
    load_recipe.upload(replay, [load_recipe, runs], outputs, api_name="roi_replay_recipe",
                       concurrency_limit=ROI_CONCURRENCY, concurrency_id="roi_models")
    history.select(pick, [runs], [recipe_file], api_name="roi_pick_history")
    clear.click(lambda: [0] * len(slider_list), None, slider_list, api_name="roi_clear_regions")

    return {f"roi.{k}": v for k, v in {"subject": subject, "canvas": canvas, "generate": generate,
                                        "vdvae": vdvae, "final": final, "pattern": pattern,
                                        "history": history, **{f"region_{r}": s for r, s in sliders.items()}}.items()}

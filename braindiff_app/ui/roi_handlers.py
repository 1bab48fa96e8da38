"""The ROI studio's handlers: :class:`ROIHandlers` (Python values in and out, no gradio events; the tab is
:mod:`braindiff_app.ui.roi`).

Models load once, in a background thread started with the app (:meth:`ROIHandlers.warm`), or at the latest on the
first use, and are shared by every session. A recipe (regions, weights, painted voxels, seed,
stage-2 settings) is kept for each experiment and can be downloaded as JSON that re-creates it (also from the CLI:
``braindiff roi --recipe FILE``). Recipe files are named by the recipe's content id, in one folder per browser
session; folders unused for :data:`RECIPE_FOLDER_TTL` seconds are removed, and the whole temp folder at exit.

Concurrent Generates run together: each request's features are predicted in its own thread, then a
:class:`~braindiff_app.ui._batching.MicroBatcher` runs the requests that share stage-2 settings as one pipeline call
(each image depends only on its own seed: the images are those of single calls up to float summation order, at most
1 grey level on about 0.01% of the values, see :mod:`~braindiff_app.ui._batching`). Requests are bounded: recipe
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from braindiff_app.atomic import atomic_path
from braindiff_app.data.atlas import ALL_REGIONS
from braindiff_app.encoding import EncodingModels, Ranked, load_encoding_models, subjects_with_encoders
from braindiff_app.pipeline import ReconstructionOutput
from braindiff_app.protocol import DEFAULT_PROTOCOL
from braindiff_app.regression import FEATURE_NAMES, subjects_with_regressors
from braindiff_app.roi import Recipe, ROIModels, load_roi_models, load_subject_flatmap, painted_voxels, roi_settings
from braindiff_app.roi_recipe import check_candidates
from braindiff_app.stage2 import TIER_DIFFUSION_STEPS, Stage2Settings
from braindiff_app.ui import text
from braindiff_app.ui._batching import MicroBatcher
from braindiff_app.ui.roi_canvas import (
    PATTERN_COLOURS,
    StudioMap,
    painted_layer,
    pattern_overlay,
    region_at,
    studio_map,
)
from braindiff_app.ui.state import AppState

__all__ = ["ROIHandlers", "ROIResult", "Controls", "MAX_CANVAS_PIXELS", "MAX_STEPS_FACTOR", "ROI_CONCURRENCY",
           "PATTERN_COLOURS"]
#: Best-of-N candidates the app makes per Generate at most (one micro-batch; the CLI's recipes take up to 16).
MAX_APP_CANDIDATES = 8
#: Recipes run in the app take at most this many times the tier's default DDIM steps (the CLI takes any count).
MAX_STEPS_FACTOR = 2
#: Largest canvas layer (pixels) gradio may decode: the flatmaps are far smaller. PIL refuses images over twice its
#: MAX_IMAGE_PIXELS from the header alone (a 567 KB PNG declaring 12000x12000 once took 2.7 GB and 14 s to decode).
MAX_CANVAS_PIXELS = 4096 * 4096
Image.MAX_IMAGE_PIXELS = min(Image.MAX_IMAGE_PIXELS or MAX_CANVAS_PIXELS, MAX_CANVAS_PIXELS // 2)
#: Generate/replay events the app lets wait on the micro-batcher at once (they run in batches of up to 8).
ROI_CONCURRENCY = 16
#: Pattern pictures kept (848x900x3 bytes each on the demo: 2.3 MB).
PATTERN_CACHE = 8
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


@dataclass(frozen=True)
class Controls:
    """The studio's controls as a recipe sets them: subject, seed, paint weight, every region's weight, the canvas
    layer re-painting the recipe's voxels (None when it paints none or the subject has no flatmap) and the recipe's
    settings (the next Generate runs with them)."""

    subject: str
    seed: int
    painted_weight: float
    weights: dict[str, float]
    layer: np.ndarray | None
    settings: dict


class ROIHandlers:
    """The ROI studio's actions, independent of gradio."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._models: ROIModels | None = None
        self._encoders: EncodingModels | None = None
        self.settings, self.committed = roi_settings(state.settings)
        self._flatmaps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._maps: dict[tuple[str, bool], np.ndarray] = {}
        self._studio: dict[str, StudioMap] = {}
        self._pictures: dict[tuple, np.ndarray | None] = {}  # pattern_image's cache, oldest first
        self._pictures_lock = threading.Lock()
        self._lock = threading.Lock()
        self._warm: dict[str, float | str | None] = {"started": None, "seconds": None, "error": None}
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

    def warm(self) -> None:
        """Load the models in a background thread (once), so the first visit to the tab does not wait."""
        with self._lock:
            if self._warm["started"] is not None or self._models is not None:
                return
            self._warm["started"] = time.monotonic()

        def load() -> None:
            try:
                self.models()
            except Exception as exc:  # noqa: BLE001 - shown in the tab's status; the tab says the same when opened
                self._warm["error"] = str(exc)
            self._warm["seconds"] = time.monotonic() - self._warm["started"]

        threading.Thread(target=load, name="braindiff-roi-warm", daemon=True).start()

    def warm_status(self) -> tuple[str, bool]:
        """The warm-up's status line and whether it is over (loaded, failed, or never started)."""
        started, seconds, error = self._warm["started"], self._warm["seconds"], self._warm["error"]
        if error:
            return text.ROI_WARM_FAILED.format(reason=error), True
        if started is None:
            return "", True
        if seconds is None:
            return text.ROI_WARMING.format(seconds=time.monotonic() - started), False
        return text.ROI_READY.format(seconds=seconds), True

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
            missing = [a.absent.get(region, f"subject {a.subject} has no {region} voxels") for a in atlases
                       if region not in a.regions]
            if len(missing) < len(list(atlases)):
                reasons[region] = ""
            elif subject == "average":  # one subject's reason would read as if the average were that subject
                names = ", ".join(str(a.subject) for a in atlases)
                reasons[region] = f"none of subjects {names} has {region} voxels"
            else:
                reasons[region] = missing[0]
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

    def studio(self, subject: str) -> StudioMap:
        """``subject``'s flatmap as the studio draws it (subject 1's for the average); errors as :meth:`flatmap`."""
        key = self.models().subjects[0] if subject == "average" else subject
        if key not in self._studio:
            image, lookup = self.flatmap(key)
            self._studio[key] = studio_map(image, lookup, self.models().atlases[key])
        return self._studio[key]

    def map_image(self, subject: str, bands: bool = False) -> np.ndarray:
        """The flatmap with region outlines, names and orientation (and eccentricity bands when ``bands``), RGBA
        of shape (height, width, 4)."""
        key = (self.models().subjects[0] if subject == "average" else subject, bool(bands))
        if key not in self._maps:
            self._maps[key] = self.studio(subject).draw(eccentricity=bands)
        return self._maps[key]

    def region_at(self, subject: str, x: int, y: int) -> str:
        """What lies under flatmap pixel (x, y) for ``subject``: regions, hemisphere, voxel (the brush's lookup)."""
        key = self.models().subjects[0] if subject == "average" else subject
        return region_at(self.studio(subject), self.models().atlases[key], int(x), int(y))

    def controls(self, recipe: Recipe) -> Controls:
        """The controls that make ``recipe`` again (its painted voxels as a canvas layer in the brush colour)."""
        layer = None
        if recipe.painted and not self.flatmap_problem(recipe.subject):
            layer = painted_layer(recipe.painted, self.flatmap(recipe.subject)[1], recipe.painted_weight)
        weights = {region: float(recipe.regions.get(region, 0.0)) for region in ALL_REGIONS}
        return Controls(recipe.subject, recipe.seed, recipe.painted_weight, weights, layer, dict(recipe.settings))

    def flatmap_problem(self, subject: str) -> str:
        """Why ``subject`` has no flatmap to paint on ("" when it has one)."""
        try:
            self.flatmap(subject)
        except (FileNotFoundError, ValueError) as exc:
            return text.ROI_NO_FLATMAP.format(reason=exc)
        return ""

    def recipe(self, subject: str, weights: dict[str, float], painted_mask: np.ndarray | None,
               painted_weight: float, seed: int, settings: dict | None = None) -> Recipe:
        """Build a recipe from the studio's controls; ValueError for an empty selection.

        ``settings`` (a recipe's settings, e.g. those of a restored recipe) default to the tier's stage-2 settings;
        the tier is recorded either way.
        """
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
                      settings={**(settings or Stage2Settings.for_tier(self.settings.tier).to_json()),
                                "tier": self.settings.tier})

    def pattern_image(self, recipe: Recipe) -> np.ndarray | None:
        """The recipe's voxels drawn on the studio's flatmap (:meth:`map_image`): red where the weight is
        positive, blue where negative.

        The pattern is the one the regressors see (:meth:`ROIModels.patterns`); for the average, that of the first
        subject it uses. None when that subject has no flatmap (see :meth:`flatmap_problem`). The last
        :data:`PATTERN_CACHE` pictures are kept (read-only): a class asking the same regions draws them once.
        """
        key = (recipe.subject, tuple(sorted(recipe.regions.items())), tuple(recipe.painted), recipe.painted_weight)
        picture = self._pictures.get(key)
        if picture is None:
            picture = self._draw_pattern(recipe)
            if picture is not None:
                picture.flags.writeable = False
            with self._pictures_lock:
                self._pictures[key] = picture
                while len(self._pictures) > PATTERN_CACHE:
                    del self._pictures[next(iter(self._pictures))]
        return picture

    def _draw_pattern(self, recipe: Recipe) -> np.ndarray | None:
        models = self.models()
        patterns = models.patterns(recipe) if recipe.subject == "average" else None
        subject = next(iter(patterns)) if patterns else recipe.subject
        if self.flatmap_problem(subject):
            return None
        weight = (patterns or models.patterns(recipe))[subject]  # (n_voxels,)
        return pattern_overlay(self.map_image(subject), self.flatmap(subject)[1], weight)

    def pattern_file(self, pattern: np.ndarray | None) -> str | None:
        """``pattern`` (a :meth:`pattern_image`) as a PNG file, written once per distinct picture and named by its
        content: gradio sends a file as it is, where it encoded the 848x900 array again on every Generate (~50 ms
        of CPU each). None stays None."""
        if pattern is None:
            return None
        path = self._out / "patterns" / f"{hashlib.sha256(pattern.tobytes()).hexdigest()[:24]}.png"
        if not path.is_file():
            with atomic_path(path) as tmp:
                Image.fromarray(pattern).save(tmp, format="PNG")
        return str(path)

    def session_folder(self, session: str | None) -> Path:
        """The folder of one browser session's recipe files (``gr.Request.session_hash``; None: a fresh folder).

        The folder name is a digest of the session hash (which the browser sends), so it is always a plain name.
        """
        key = session if session else f"no-session-{uuid.uuid4().hex}"
        return self._out / hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]

    def max_steps(self) -> int:
        """DDIM steps a recipe may ask of the app: :data:`MAX_STEPS_FACTOR` times the tier's default."""
        return MAX_STEPS_FACTOR * TIER_DIFFUSION_STEPS[self.settings.tier]

    def _save_recipe(self, recipe: Recipe, session: str | None) -> str:
        """Save ``recipe`` in the session's folder, named by its content id; the path."""
        path = self.session_folder(session) / f"roi-{recipe.subject}-{recipe.content_id}.json"
        recipe.save(path)
        return str(path)

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
        output = self._run_seeds(recipe, 1, callback)[0]
        return ROIResult(recipe, output.vdvae[0], output.final[0], self.pattern_image(recipe),
                         self._save_recipe(recipe, session))

    def _run_seeds(self, recipe: Recipe, n: int, callback=None) -> list[ReconstructionOutput]:
        """Check ``recipe`` for the studio, then make its images with seeds ``seed ... seed + n - 1``, queued
        together so that they share a micro-batch (``callback`` follows the first seed's)."""
        if recipe.settings.get("protocol", DEFAULT_PROTOCOL) != DEFAULT_PROTOCOL:
            raise ValueError(f"settings.protocol: the studio runs the braindiff protocol, the recipe asks "
                             f"{recipe.settings['protocol']!r}; run it with `braindiff roi --recipe FILE`.")
        steps, tier = recipe.stage2.num_inference_steps, self.settings.tier
        if steps > self.max_steps():
            raise ValueError(f"settings.num_inference_steps: the app runs at most {self.max_steps()} DDIM steps "
                             f"({MAX_STEPS_FACTOR}x the {tier} tier's {TIER_DIFFUSION_STEPS[tier]}), the recipe "
                             f"asks {steps}; run it with `braindiff roi --recipe FILE`.")
        features = self.models().features(recipe)  # errors of this recipe stay its own
        outputs = self.batcher.submit_many(recipe.stage2, [(features, recipe.seed + k, callback if k == 0 else None)
                                                           for k in range(n)])
        self._sweep()
        return outputs

    def default_candidates(self) -> int:
        """The studio's default number of best-of-N candidates: 4 when subjects have an encoder, else 1."""
        return 4 if subjects_with_encoders(self.settings) else 1

    def encoders(self) -> EncodingModels:
        """The studio's models with each subject's encoder (sharing the studio's pipeline), loaded once."""
        models = self.models()
        with self._lock:
            if self._encoders is None:
                self._encoders = load_encoding_models(self.settings, roi=models)
            return self._encoders

    def generate_ranked(self, recipe: Recipe, candidates: int, callback=None,
                        session: str | None = None) -> tuple[ROIResult, Ranked | None]:
        """Best-of-N: the recipe with seeds ``seed ... seed + candidates - 1`` (1 to :data:`MAX_APP_CANDIDATES`),
        queued together (one pipeline call unless other requests join the batch) and ranked by
        the encoder's predicted activation of its regions (:meth:`braindiff_app.encoding.EncodingModels.rank`, as
        :meth:`~braindiff_app.encoding.EncodingModels.best_of_n` does). The saved recipe records N and the ranking;
        the result shows the best candidate. A subject without an encoder gets the recipe's own image and None."""
        candidates = check_app_candidates(candidates)
        if recipe.subject != "average" and recipe.subject not in subjects_with_encoders(self.settings):
            return self.generate(recipe, callback, session), None  # no encoder to rank by (the status says so)
        outs = self._run_seeds(recipe, candidates, callback)
        finals = np.concatenate([o.final for o in outs])
        vdvaes = np.concatenate([o.vdvae for o in outs])
        ranked = self.encoders().rank(recipe, finals, vdvaes, recipe.seed + np.arange(candidates))
        return ROIResult(ranked.recipe, ranked.vdvaes[0], ranked.finals[0], self.pattern_image(recipe),
                         self._save_recipe(ranked.recipe, session)), ranked

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


def check_app_candidates(n: Any) -> int:
    """The number of best-of-N candidates the app makes: the library's rule (:func:`~braindiff_app.roi_recipe.
    check_candidates`) with the app's limit, :data:`MAX_APP_CANDIDATES` (a CPU makes 8 in a few seconds)."""
    return check_candidates(n, MAX_APP_CANDIDATES)


def _session(request) -> str | None:
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

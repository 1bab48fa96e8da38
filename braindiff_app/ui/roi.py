"""The ROI studio tab: paint or combine brain regions on the flatmap and see the images they "prefer".

The handlers are :class:`~braindiff_app.ui.roi_handlers.ROIHandlers` (plain Python); the pictures come from
:mod:`braindiff_app.ui.roi_canvas`. This module lays out the controls and wires the events:

- every control can be set from a recipe: replaying a recipe file, clicking a history item and opening a
  ``?tab=roi&recipe=TOKEN`` link (:meth:`Recipe.to_link`) restore subject, seed, paint weight, region weights,
  the painted layer and the recipe's settings; **Copy link** writes the current controls' link;
- the canvas keeps its flatmap when cleared (the trash icon), its brush follows the paint weight's sign, and the
  subject average and a subject without a flatmap cannot be painted (the canvas is emptied and its label says
  why; a stroke there is refused at Generate with the reason);
- ``/roi_generate`` names each input: ``subject``, ``seed``, ``canvas``, ``paint_weight`` and one keyword per
  region (:data:`REGION_PARAMS`, e.g. ``V1``, ``ecc0_5``). More keyword inputs are added through
  ``inputs_kwargs`` and arrive in ``run``'s ``**inputs``.
"""

from __future__ import annotations

import os
from dataclasses import replace

import gradio as gr

from braindiff_app.data.atlas import ALL_REGIONS, CATEGORY_REGIONS, ECCENTRICITY_REGIONS, REGION_LABELS, VISUAL_REGIONS
from braindiff_app.roi import Recipe
from braindiff_app.ui import bounded, text
from braindiff_app.ui.roi_canvas import REGION_COLOURS, brush_colour, painted_mask
from braindiff_app.ui.roi_handlers import (
    MAX_APP_CANDIDATES,
    MAX_CANVAS_PIXELS,
    MAX_STEPS_FACTOR,
    PATTERN_COLOURS,
    ROI_CONCURRENCY,
    ROIHandlers,
    ROIResult,
    _mask_from_editor,
    _session,
    check_app_candidates,
)
from braindiff_app.ui.state import AppState

__all__ = ["ROIHandlers", "ROIResult", "build_roi_tab", "MAX_CANVAS_PIXELS", "MAX_STEPS_FACTOR", "ROI_CONCURRENCY",
           "PATTERN_COLOURS", "REGION_PARAMS", "PRESETS", "history_caption", "_mask_from_editor"]

HISTORY_SIZE = 24  # experiments kept per session (each Generate re-sends the gallery: bounded memory and work)
#: API parameter name of each region's weight (Python identifiers: "ecc0.5" -> "ecc0_5", "ecc4+" -> "ecc4_plus").
REGION_PARAMS = {r: r.replace(".", "_").replace("+", "_plus") for r in ALL_REGIONS}
#: One-click examples: the paper's Figure 5 (V1-hV4, the four category regions) and Figure 7 (eccentricity
#: bands) regions at +1, early visual cortex together, and the combination the paper's discussion proposes.
PRESETS: dict[str, dict[str, float]] = {
    **{r: {r: 1.0} for r in (*VISUAL_REGIONS, *CATEGORY_REGIONS)},
    **{f"{r} ({REGION_LABELS[r]})": {r: 1.0} for r in ECCENTRICITY_REGIONS},
    text.ROI_PRESET_EARLY: {"V1": 1.0, "V2": 1.0, "V3": 1.0},
    text.ROI_PRESET_COMBINATION: {"V1": 1.0, "hV4": 1.0, "faces": 1.0, "V2": -1.0, "bodies": -1.0},
}
CSS = """
#roi-canvas canvas { cursor: crosshair; }
.roi-sliders .form { min-width: 0 !important; }
.roi-legend span.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #000;
  vertical-align: middle; margin-right: 0.3em; }
#roi-history .caption-label { white-space: normal !important; overflow: visible !important; }
"""
# The address bar and the link box take the recipe's link; the link is copied where the browser allows.
LINK_JS = """(token) => {
  if (!token) return '';
  if (token.startsWith('http')) return token;
  const url = new URL(window.location.href);
  url.search = '';
  url.searchParams.set('tab', 'roi');
  url.searchParams.set('recipe', token);
  window.history.replaceState(null, '', url);
  if (navigator.clipboard) { navigator.clipboard.writeText(url.href).catch(() => {}); }
  return url.href;
}"""


def history_caption(number: int, recipe: Recipe) -> str:
    """A history item's caption, short enough to read whole: ``"3 · S1 · V1+1 faces+1 · seed 0"``."""
    parts = [f"{name}{weight:+g}" for name, weight in recipe.regions.items()]
    if recipe.painted:
        parts.append(f"{len(recipe.painted)}vox{recipe.painted_weight:+g}")
    who = "avg" if recipe.subject == "average" else f"S{recipe.subject}"
    regions = " ".join(parts)
    regions = regions if len(regions) <= 22 else regions[:21] + "…"
    return f"{number} · {who} · {regions} · seed {recipe.seed}"


def _legend(subject_regions: set[str] | None = None) -> str:
    """The outline colours with the slider names and what each region unites (the paper's definitions)."""
    items = []
    for region in (*VISUAL_REGIONS, *CATEGORY_REGIONS):
        if subject_regions is not None and region not in subject_regions:
            continue
        r, g, b = REGION_COLOURS[region]
        items.append(f"<span class='swatch' style='background: rgb({r},{g},{b})'></span><b>{region}</b> = "
                     f"{text.ROI_PAPER_UNIONS[region]}")
    bands = ", ".join(REGION_LABELS[r] for r in ECCENTRICITY_REGIONS)
    return (f"<div class='roi-legend'><b>{text.ROI_LEGEND_TITLE}:</b> " + " · ".join(items)
            + f" · {text.ROI_LEGEND_BANDS}{bands}</div>")


def build_roi_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the ROI studio tab inside ``app``; returns its components keyed ``roi.<name>``.

    The handlers are kept as ``app.braindiff_roi`` (``launch_app`` starts their warm-up).
    """
    handlers = ROIHandlers(state)
    app.braindiff_roi = handlers
    with gr.Tab(text.ROI_TAB) as tab:
        gr.Markdown(text.ROI_INTRO)
        warm_status = gr.Markdown(elem_id="roi-warm")
        status = gr.Markdown(elem_id="roi-status")
        with gr.Row():
            subject = gr.Dropdown(text.subject_choices(handlers.listed_subjects()), value=None, label=text.SUBJECT,
                                  scale=2, elem_id="roi-subject")
            seed = bounded.Number(0, precision=0, minimum=0, label=text.ROI_SEED, scale=1, elem_id="roi-seed")
            candidates = bounded.Slider(1, MAX_APP_CANDIDATES, value=handlers.default_candidates(), step=1,
                                   label=text.ROI_CANDIDATES, scale=1, elem_id="roi-candidates")
            generate = gr.Button(text.ROI_GENERATE, variant="primary", scale=1, elem_id="roi-generate")
            copy = gr.Button(text.ROI_COPY_LINK, scale=0, elem_id="roi-copy-link")
        presets = gr.Radio(list(PRESETS), value=None, label=text.ROI_PRESETS, elem_id="roi-presets")
        with gr.Row():
            with gr.Column(scale=3):
                canvas = gr.ImageEditor(label=text.ROI_CANVAS, type="numpy", sources=(), transforms=(),
                                        brush=gr.Brush(default_size=12, colors=[brush_colour(1)],
                                                       color_mode="fixed"),
                                        eraser=gr.Eraser(default_size=16), layers=False, height=640,
                                        elem_id="roi-canvas")
                with gr.Row():
                    painted_weight = bounded.Slider(-1, 1, value=1, step=0.5, label=text.ROI_PAINT_WEIGHT, scale=2,
                                               elem_id="roi-paint-weight")
                    bands = gr.Checkbox(False, label=text.ROI_SHOW_BANDS, scale=1)
                gr.HTML(_legend())
            with gr.Column(scale=2, elem_classes="roi-sliders", min_width=420):
                sliders = {}
                for title, group in ((text.ROI_VISUAL, VISUAL_REGIONS), (text.ROI_CATEGORY, CATEGORY_REGIONS),
                                     (text.ROI_ECCENTRICITY, ECCENTRICITY_REGIONS)):
                    gr.Markdown(f"**{title}**")
                    for pair in range(0, len(group), 2):
                        with gr.Row():
                            for region in group[pair:pair + 2]:
                                label = region if region not in ECCENTRICITY_REGIONS else \
                                    f"{region} ({REGION_LABELS[region]})"
                                sliders[region] = bounded.Slider(-1, 1, value=0, step=0.5, label=label, min_width=180,
                                                            info=text.ROI_PAPER_UNIONS.get(region),
                                                            elem_id=f"roi-slider-{REGION_PARAMS[region]}")
                clear = gr.Button(text.ROI_CLEAR, size="sm")
        with gr.Row():
            vdvae = gr.Image(label=text.ROI_VDVAE, interactive=False, height=384, elem_classes="bd-panel",
                             format="png")
            final = gr.Image(label=text.ROI_FINAL, interactive=False, height=384, elem_classes="bd-panel",
                             format="png", elem_id="roi-final")
            pattern = gr.Image(label=text.ROI_PATTERN, interactive=False, height=384, format="png",
                               elem_id="roi-pattern", elem_classes="bd-map")
        where = gr.Markdown(text.ROI_AT_HINT, elem_id="roi-where")
        with gr.Row():
            recipe_file = gr.File(label=text.ROI_RECIPE, interactive=False, scale=1)
            link = gr.Textbox(label=text.ROI_LINK, interactive=False, elem_id="roi-link", max_lines=1, scale=2)
        with gr.Row():
            history = gr.Gallery(label=text.ROI_HISTORY, columns=4, height="auto", object_fit="contain",
                                 allow_preview=False, elem_id="roi-history")
            load_recipe = gr.File(label=text.ROI_LOAD, file_types=[".json"], type="filepath")
        gr.Markdown(text.ROI_RANK_NOTE, elem_id="roi-rank-note")
        runs = gr.State(list)
        restored = gr.State(None)  # the settings of a restored recipe, for the next Generate
        timer = gr.Timer(1.0, active=True)

    region_names = list(sliders)
    slider_list = [sliders[r] for r in region_names]

    def editor(subject, show_bands, layers=None, note=""):
        """The canvas for ``subject``: its map as the background, ``layers`` kept; empty for the average and a
        subject without a flatmap, its label saying why. Never locked (``interactive=False``): Gradio's editor then
        fails in the browser ("Cannot read properties of null (reading 'get_data')") and the event never ends."""
        problem = handlers.flatmap_problem(subject)
        if problem:
            return gr.update(value=None, label=f"{text.ROI_CANVAS}: {problem}", interactive=True)
        if subject == "average":
            return gr.update(value=None, label=text.ROI_CANVAS_AVERAGE, interactive=True)
        value = {"background": handlers.map_image(subject, show_bands), "layers": list(layers or []),
                 "composite": None}
        return gr.update(value=value, label=text.ROI_CANVAS, interactive=True)

    def slider_states(subject, weights=None):
        reasons = handlers.availability(subject)
        return [gr.update(interactive=not reasons[r], info=reasons[r] or text.ROI_PAPER_UNIONS.get(r),
                          **({} if weights is None else {"value": weights[r] if not reasons[r] else 0.0}))
                for r in region_names]

    def map_panel(subject):
        return None if handlers.flatmap_problem(subject) else handlers.map_image(subject)[..., :3]

    def open_subject(current, show_bands, request: gr.Request):
        skip = [gr.update()] * (4 + len(slider_list))
        if current or "recipe" in dict(getattr(request, "query_params", None) or {}):
            return skip  # opened before, or a recipe link fills the controls (on page load)
        choices = handlers.subjects()
        if not choices:
            return [gr.update(choices=[], value=None), text.ROI_NO_MODELS, gr.update(), gr.update()] + skip[4:]
        value = choices[0]
        note = text.ROI_COMMITTED if handlers.committed else ""
        return [gr.update(choices=text.subject_choices(choices), value=value), note, editor(value, show_bands),
                map_panel(value), *slider_states(value)]

    def on_subject(subject, show_bands, canvas):
        if not subject:
            return [gr.update()] * (3 + len(slider_list))
        layers = (canvas or {}).get("layers") if isinstance(canvas, dict) else None
        note = ""
        if layers and any(layer is not None and layer[..., 3].any() for layer in layers):
            shape = handlers.flatmap(subject)[1].shape if not handlers.flatmap_problem(subject) else None
            kept = subject != "average" and painted_mask(layers, shape) is not None
            note = (text.ROI_PAINT_KEPT if kept else text.ROI_PAINT_AVERAGE_DROPPED if subject == "average"
                    else text.ROI_PAINT_DROPPED).format(subject=subject)
            layers = layers if kept else []
        return [editor(subject, show_bands, layers), map_panel(subject), note, *slider_states(subject)]

    def restore(recipe: Recipe, show_bands):
        """Outputs that set every control to ``recipe``'s."""
        controls = handlers.controls(recipe)
        layers = [controls.layer] if controls.layer is not None else []
        return [gr.update(value=controls.subject), controls.seed, controls.painted_weight,
                editor(controls.subject, show_bands, layers), controls.settings,
                *slider_states(controls.subject, controls.weights), controls.settings.get("candidates", 1)]

    def own_settings(settings, n=1):
        """A restored recipe's settings with ``n`` candidates (the slider's; best-of-N ranks them)."""
        kept = {k: v for k, v in (settings or {}).items() if k != "candidates"} if settings else settings
        return {**(kept or {}), "candidates": int(n)} if int(n) != 1 else kept

    def run(request: gr.Request, subject, seed, canvas, paint_weight, history_runs, settings,
            progress=gr.Progress(), **inputs):
        if not subject:
            raise gr.Error(text.toast(text.ROI_NO_MODELS))
        weights = {r: inputs.get(REGION_PARAMS[r], 0) for r in region_names}
        n = inputs.get("candidates", 1)  # best-of-N; API callers without it get one image
        n = 1 if n is None else int(n) if isinstance(n, float) and n.is_integer() else n  # the slider sends 2.0
        try:
            n = check_app_candidates(n)
        except ValueError as exc:
            raise gr.Error(text.toast(str(exc)), print_exception=False) from None
        try:
            recipe = handlers.recipe(subject, weights, _mask_from_editor(canvas),
                                     1.0 if paint_weight is None else paint_weight, 0 if seed is None else seed,
                                     settings=own_settings(settings))
            progress(0, desc=text.ROI_RUNNING)
            callback = lambda stage, i, total: progress((i, total), desc=stage)  # noqa: E731
            return generated(recipe, n, callback, request, history_runs)
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
            raise gr.Error(text.toast(str(exc))) from None

    def generated(recipe: Recipe, n: int, callback, request, history_runs):
        """Generate ``recipe`` with ``n`` candidates (best-of-N when n > 1) and show it."""
        if n == 1:
            return shown(handlers.generate(recipe, callback=callback, session=_session(request)), history_runs)
        result, best = handlers.generate_ranked(recipe, n, callback=callback, session=_session(request))
        if best is None:
            return shown(result, history_runs)
        number = len(history_runs or []) + 1
        ranked = []
        for k, (img, score, s) in enumerate(zip(best.finals, best.scores, best.seeds, strict=True)):
            own = replace(recipe, seed=int(s), settings=own_settings(recipe.settings), ranking=())  # its own seed
            ranked.append((img, text.ROI_RANKED.format(caption=history_caption(number, own), rank=k + 1,
                                                       score=score), own.to_link()))
        return shown(result, history_runs, ranked)

    def shown(result: ROIResult, history_runs, ranked=()):
        """Outputs for one experiment; best-of-N candidates go to the history ranked, each with its score and a
        link to its own seed (a click restores that candidate as a one-image recipe)."""
        number = len(history_runs or []) + 1
        link = result.recipe.to_link()
        new = [(img, result.recipe_path, own_link, caption) for img, caption, own_link in ranked] or \
            [(result.final, result.recipe_path, link, history_caption(number, result.recipe))]
        history_runs = [*(history_runs or []), *new][-HISTORY_SIZE:]
        gallery = [(img, caption) for img, _, _, caption in history_runs]
        return (result.vdvae, result.final, handlers.pattern_file(result.pattern), result.recipe_path, gallery,
                history_runs, result.recipe.to_link())

    def pick(history_runs, show_bands, evt: gr.SelectData):
        _, path, token, _ = history_runs[evt.index]
        recipe = Recipe.from_link(token)  # the history keeps each item's link: its recipe file may have been swept
        path = path if path and os.path.isfile(path) else None
        return [path, token, text.ROI_RESTORED.format(label=recipe.label), *restore(recipe, show_bands)]

    def replay(recipe_file, history_runs, show_bands, request: gr.Request, progress=gr.Progress()):
        if not recipe_file:
            return [gr.update()] * (len(outputs) + len(restore_outputs))
        try:
            recipe = Recipe.load(recipe_file)
            n = min(int(recipe.settings.get("candidates", 1)), MAX_APP_CANDIDATES)  # best-of-N recipes rank again
            made = generated(replace(recipe, ranking=()), n, lambda stage, i, total: progress((i, total),
                                                                                            desc=stage),
                             request, history_runs)
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
            # The upload's name, not the server's temporary path; the last result stays as it was.
            gr.Warning(text.toast(str(exc).replace(str(recipe_file), os.path.basename(str(recipe_file)))))
            return [gr.update()] * (len(outputs) + len(restore_outputs))
        return [*made, *restore(recipe, show_bands)]

    def make_link(subject, seed_value, canvas_value, paint_weight, settings, n, *weights):
        try:
            recipe = handlers.recipe(subject, dict(zip(region_names, weights, strict=True)),
                                     _mask_from_editor(canvas_value), 1.0 if paint_weight is None else paint_weight,
                                     0 if seed_value is None else seed_value, settings=own_settings(settings, n or 1))
        except (ValueError, TypeError, FileNotFoundError) as exc:
            return "", text.ROI_LINK_PROBLEM.format(reason=exc)
        return recipe.to_link(), ""

    def from_link(show_bands, request: gr.Request):
        token = dict(getattr(request, "query_params", None) or {}).get("recipe")
        if not token:
            return [gr.update()] * (7 + len(slider_list)) + [gr.update()]
        try:
            recipe = Recipe.from_link(token)
            return [*restore(recipe, show_bands), text.ROI_LINK_LOADED, map_panel(recipe.subject)]
        except (ValueError, TypeError, FileNotFoundError, KeyError) as exc:
            problem = text.ROI_LINK_BAD.format(reason=text.plain(str(exc)))
        choices = handlers.subjects()  # a bad link: open the studio as the tab would (it left that to the link)
        if not choices:
            return [gr.update()] * (6 + len(slider_list)) + [f"{problem}\n\n{text.ROI_NO_MODELS}", gr.update()]
        value = choices[0]
        return [gr.update(choices=text.subject_choices(choices), value=value), gr.update(), gr.update(),
                editor(value, show_bands), None,
                *slider_states(value), gr.update(), problem, map_panel(value)]

    def preset(name, subject):
        """The example's weights; regions the subject lacks stay 0 (said), and an example of nothing but such
        regions is unselected again (it would set no weight at all)."""
        weights = {r: 0.0 for r in region_names} | PRESETS.get(name, {})
        reasons = handlers.availability(subject) if subject else {r: "" for r in region_names}
        absent = [r for r, w in weights.items() if w and reasons[r]]
        note = text.ROI_PRESET_ABSENT.format(subject=subject, regions=", ".join(absent)) if absent else ""
        kept = [0.0 if reasons[r] else weights[r] for r in region_names]
        return [note, gr.update() if any(kept) else gr.update(value=None)] + kept

    def on_bands(subject, show_bands, value):
        if not subject:
            return gr.update()
        layers = (value or {}).get("layers") if isinstance(value, dict) else None
        return editor(subject, show_bands, layers)

    def name_region(subject, evt: gr.SelectData):
        if not subject or handlers.flatmap_problem(subject):
            return text.ROI_AT_HINT
        return handlers.region_at(subject, *evt.index[:2])

    def tick():
        line, over = handlers.warm_status()
        return line, gr.Timer(active=not over)

    restore_outputs = [subject, seed, painted_weight, canvas, restored, *slider_list, candidates]
    # The models load when the app starts (launch_app) or, at the latest, when the tab is first opened; ``input``
    # (the user's own choice) rather than ``change``: a programmatic subject would otherwise reset the canvas.
    tab.select(open_subject, [subject, bands], [subject, status, canvas, pattern, *slider_list], api_name=False)
    # "always_last": a switch made while the previous one is still pending (the editor re-uploading its layers)
    # runs after it; the default ("once") dropped it, leaving the dropdown on a subject the studio never loaded.
    subject.input(on_subject, [subject, bands, canvas], [canvas, pattern, status, *slider_list],
                  api_name="roi_select_subject", trigger_mode="always_last")
    outputs = [vdvae, final, pattern, recipe_file, history, runs, link]
    # Generate and replay share the models: their events wait together on the handlers' micro-batcher.
    generate.click(run, [subject, seed, canvas, painted_weight, runs, restored], outputs,
                   inputs_kwargs={**{REGION_PARAMS[r]: sliders[r] for r in region_names}, "candidates": candidates},
                   api_name="roi_generate", show_progress_on=[final],
                   concurrency_limit=ROI_CONCURRENCY, concurrency_id="roi_models").then(
        None, [link], [link], js=LINK_JS, api_name=False)
    load_recipe.upload(replay, [load_recipe, runs, bands], outputs + restore_outputs, api_name="roi_replay_recipe",
                       show_progress_on=[final], concurrency_limit=ROI_CONCURRENCY,
                       concurrency_id="roi_models").then(
        None, [link], [link], js=LINK_JS, api_name=False)
    history.select(pick, [runs, bands], [recipe_file, link, status, *restore_outputs],
                   api_name="roi_pick_history").then(None, [link], [link], js=LINK_JS, api_name=False)
    clear.click(lambda: [0] * len(slider_list), None, slider_list, api_name="roi_clear_regions")
    # The trash icon empties the editor: put the flatmap back, so painting goes on.
    canvas.clear(lambda s, b: editor(s, b) if s else gr.update(), [subject, bands], [canvas], api_name=False)
    painted_weight.change(lambda w: gr.update(brush=gr.Brush(default_size=12, colors=[brush_colour(w)],
                                                             color_mode="fixed")),
                          [painted_weight], [canvas], api_name=False)
    bands.input(on_bands, [subject, bands, canvas], [canvas], api_name=False, trigger_mode="always_last")
    presets.input(preset, [presets, subject], [status, presets, *slider_list], api_name=False)
    pattern.select(name_region, [subject], [where], api_name=False)
    copy.click(make_link, [subject, seed, canvas, painted_weight, restored, candidates, *slider_list], [link, status],
               api_name=False).then(None, [link], [link], js=LINK_JS, api_name=False)
    app.load(from_link, [bands], [*restore_outputs, status, pattern], api_name=False)
    timer.tick(tick, None, [warm_status, timer], api_name=False)

    return {f"roi.{k}": v for k, v in {"subject": subject, "canvas": canvas, "generate": generate, "seed": seed,
                                        "vdvae": vdvae, "final": final, "pattern": pattern, "link": link,
                                        "paint_weight": painted_weight, "presets": presets, "bands": bands,
                                        "history": history, **{f"region_{r}": s for r, s in sliders.items()}}.items()}

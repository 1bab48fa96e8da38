"""The Browse tab: pick a subject and a test trial, see the seen image beside its reconstructions.

Handlers are plain methods on :class:`BrowseHandlers` (Python values in, Python values out); the builder wires
them to components, each event with an ``api_name`` so ``gradio_client`` can drive the same actions. The tab only
reads bundles: no model, no GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from braindiff_app.bundles import ABLATION_KINDS, IMAGE_KINDS, KIND_LABELS
from braindiff_app.ui import text
from braindiff_app.ui.state import AppState

__all__ = ["BrowseHandlers", "TrialView", "build_browse_tab"]

GALLERY_PAGE = 48


@dataclass(frozen=True)
class TrialView:
    """Everything the tab shows for one trial.

    Attributes
    ----------
    index : int
        Position of the trial in its bundle.
    images : dict of str to str or None
        Path of each image kind's PNG (None where the bundle lacks that kind).
    header : str
        Markdown line naming the bundle, the trial and its image id.
    captions : str
        Markdown list of the captions.
    metric_names : list of str
    metric_rows : list of list
        One row per image kind that has metrics: [label, value per metric].
    """

    index: int
    images: dict[str, str | None]
    header: str
    captions: str
    metric_names: list[str]
    metric_rows: list[list]


class BrowseHandlers:
    """The Browse tab's actions, independent of gradio."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def subjects(self) -> list[tuple[str, str]]:
        """Dropdown choices: (label, bundle name) for every bundle found."""
        return [(text.subject_label(b.subject, b.tier, b.name), b.name) for b in self.state.bundles]

    def trial(self, bundle_name: str, index: int) -> TrialView:
        """The view of trial ``index`` of a bundle (reads no image: paths only)."""
        bundle = self.state.bundle(bundle_name)
        index = int(index)
        if not 0 <= index < bundle.n_trials:
            raise ValueError(f"trial: {bundle.name} has trials 0..{bundle.n_trials - 1}, got {index}.")
        record = bundle.trials[index]
        images = {k: str(bundle.image_path(index, k)) if k in bundle.kinds else None for k in IMAGE_KINDS}
        metrics = bundle.trial_metrics(index)
        names = sorted({name for table in metrics.values() for name in table})
        rows = [[KIND_LABELS[k]] + [_fmt(metrics[k].get(n)) for n in names] for k in IMAGE_KINDS if k in metrics]
        captions = "\n".join(f"- {c}" for c in record.captions) or "_(no caption)_"
        header = (f"**{text.subject_label(bundle.subject, bundle.tier, bundle.name)}** · trial {index + 1} of "
                  f"{bundle.n_trials} · image id {record.trial_id} · "
                  f"{text.protocol_label(bundle.manifest.settings.get('protocol', 'braindiff'))}")
        return TrialView(index, images, header, captions, names, rows)

    def jump(self, bundle_name: str, trial_id: int) -> int:
        """Index of the trial showing image ``trial_id``; ValueError if the bundle has none."""
        bundle = self.state.bundle(bundle_name)
        for record in bundle.trials:
            if record.trial_id == int(trial_id):
                return record.index
        raise ValueError(text.UNKNOWN_ID.format(trial_id=int(trial_id), bundle=bundle.name))

    def search(self, bundle_name: str, query: str) -> list[int]:
        """Indices of the trials whose captions contain ``query`` (all trials for an empty query)."""
        return self.state.bundle(bundle_name).search(query)

    def thumbnails(self, bundle_name: str, indices: list[int]) -> list[tuple[str, str]]:
        """Gallery items (ground-truth path, label) for at most one page of ``indices``."""
        bundle = self.state.bundle(bundle_name)
        return [(str(bundle.image_path(i, "ground_truth")), f"#{i + 1} · id {bundle.trials[i].trial_id}")
                for i in indices[:GALLERY_PAGE]]


def _fmt(value: float | None) -> str:
    if value is None or value != value:  # NaN
        return "–"
    return f"{value:.3f}"


def build_browse_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the Browse tab inside ``app`` (an open ``gr.Blocks``); returns its components keyed ``browse.<name>``.

    On page load the tab opens the default bundle (the demo's subject 1 when present) at its first trial.
    """
    handlers = BrowseHandlers(state)
    choices = handlers.subjects()
    default = state.default_bundle
    n_trials = state.bundle(default).n_trials if default else 1

    with gr.Tab(text.BROWSE_TAB):
        status = gr.Markdown(_status_message(state), visible=not state.bundles or bool(state.problems))
        with gr.Row():
            subject = gr.Dropdown(choices=choices, value=default, label=text.SUBJECT, scale=3)
            refresh = gr.Button(text.REFRESH, scale=0, size="sm")
        with gr.Row():
            trial = gr.Slider(0, max(n_trials - 1, 1), value=0, step=1, label=text.TRIAL, scale=4)
            jump_id = gr.Number(label=text.JUMP_ID, precision=0, scale=1)
            jump = gr.Button(text.JUMP, scale=0, size="sm")
        header = gr.Markdown()
        show_ablations = gr.Checkbox(value=True, label=text.SHOW_ABLATIONS)
        with gr.Row(equal_height=True):
            images = {k: gr.Image(label=KIND_LABELS[k], type="filepath", interactive=False, show_label=True,
                                  buttons=["download", "fullscreen"], min_width=140, elem_classes="bd-panel")
                      for k in IMAGE_KINDS}
        with gr.Row():
            captions = gr.Markdown(label=text.CAPTION)
            metrics = gr.Dataframe(label=text.METRICS, interactive=False, wrap=True, visible=False)
        with gr.Row():
            query = gr.Textbox(label=text.SEARCH, placeholder=text.SEARCH_PLACEHOLDER, scale=4)
            search = gr.Button(text.SEARCH, scale=0, size="sm")
        hits_info = gr.Markdown()
        hits = gr.State([])
        gallery = gr.Gallery(label=text.RESULTS, columns=8, height=240, allow_preview=False)

    trial_outputs = [header, *images.values(), captions, metrics]

    def show(bundle_name: str | None, index: float):
        if not bundle_name:
            return ["", *[None] * len(images), "", gr.update(visible=False)]
        try:
            view = handlers.trial(bundle_name, int(index))
        except (ValueError, IndexError) as exc:
            raise gr.Error(str(exc)) from None
        table = gr.update(value={"headers": ["image", *view.metric_names], "data": view.metric_rows},
                          visible=True) if view.metric_rows else gr.update(value=None, visible=False)
        captions_md = f"**{text.CAPTION}**\n\n{view.captions}"
        if not view.metric_rows:
            captions_md += "\n\n" + text.NOT_EVALUATED.format(path=state.bundle(bundle_name).path)
        return [view.header, *(view.images[k] for k in IMAGE_KINDS), captions_md, table]

    def toggle(ablations: bool):
        return [gr.update(visible=bool(ablations)) for _ in ABLATION_KINDS]

    def select(bundle_name: str | None):
        if not bundle_name:
            return gr.update(), [], []
        indices = handlers.search(bundle_name, "")
        n = state.bundle(bundle_name).n_trials
        return gr.update(maximum=max(n - 1, 1), value=0), indices, handlers.thumbnails(bundle_name, indices)

    def do_jump(bundle_name: str | None, trial_id: float | None):
        if not bundle_name or trial_id is None:
            raise gr.Error(text.UNKNOWN_ID.format(trial_id=trial_id, bundle=bundle_name))
        try:
            return handlers.jump(bundle_name, int(trial_id))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    def do_search(bundle_name: str | None, q: str):
        if not bundle_name:
            return [], [], ""
        indices = handlers.search(bundle_name, q)
        more = f" (showing the first {GALLERY_PAGE})" if len(indices) > GALLERY_PAGE else ""
        info = (text.SEARCH_HITS.format(n=len(indices), query=q, more=more) if indices
                else text.NO_MATCH.format(bundle=bundle_name, query=q))
        return indices, handlers.thumbnails(bundle_name, indices), info

    def pick(indices: list[int], evt: gr.SelectData):
        return indices[evt.index]

    def do_refresh(current: str | None):
        state.refresh()
        names = [name for _, name in handlers.subjects()]
        value = current if current in names else state.default_bundle
        return gr.update(choices=handlers.subjects(), value=value), gr.update(
            value=_status_message(state), visible=not state.bundles or bool(state.problems))

    subject.change(select, [subject], [trial, hits, gallery], api_name="select_subject").then(
        show, [subject, trial], trial_outputs, api_name=False)
    trial.change(show, [subject, trial], trial_outputs, api_name="show_trial", trigger_mode="always_last")
    show_ablations.change(toggle, [show_ablations], [images[k] for k in ABLATION_KINDS],
                          api_name="toggle_ablations")
    jump.click(do_jump, [subject, jump_id], [trial], api_name="jump_to_trial")
    search.click(do_search, [subject, query], [hits, gallery, hits_info], api_name="search_captions")
    query.submit(do_search, [subject, query], [hits, gallery, hits_info], api_name=False)
    gallery.select(pick, [hits], [trial], api_name="pick_thumbnail")
    refresh.click(do_refresh, [subject], [subject, status], api_name="rescan_bundles")
    app.load(select, [subject], [trial, hits, gallery], api_name=False).then(
        show, [subject, trial], trial_outputs, api_name=False)

    components = {"subject": subject, "trial": trial, "show_ablations": show_ablations, "gallery": gallery,
                  "query": query, "header": header, "captions": captions, "metrics": metrics, "hits": hits}
    components.update({f"image_{k}": v for k, v in images.items()})
    return {f"browse.{k}": v for k, v in components.items()}


def _status_message(state: AppState) -> str:
    parts = []
    tier = state.settings.tier
    if not any(b.tier == tier for b in state.bundles):
        parts.append(text.no_bundle(tier, state.settings.bundle_dirs))
        if state.bundles:
            parts.append(text.OTHER_BUNDLES)
    if state.problems:
        parts.append(text.BROKEN_BUNDLES.format(problems="\n".join(f"- {p}" for p in state.problems)))
    return "\n\n".join(parts)

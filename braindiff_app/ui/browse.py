"""The Browse tab: pick a subject and a test trial, see the seen image beside its reconstructions.

Handlers are plain methods on :class:`BrowseHandlers` (Python values in, Python values out); the builder wires
them to components, each event with an ``api_name`` so ``gradio_client`` can drive the same actions. The tab only
reads bundles: no model, no GPU.

The slider counts trials from 1 (as the header does); the API endpoints ``show_trial`` and ``jump_to_trial`` take
and return the trial's 0-based index in its bundle. Switching subject keeps the image (the same NSD image id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import gradio as gr

from braindiff_app.bundles import ABLATION_KINDS, IMAGE_KINDS
from braindiff_app.ui import bounded, text
from braindiff_app.ui.state import AppState

__all__ = ["GALLERY_PAGE", "BrowseHandlers", "TrialView", "build_browse_tab", "caption_words"]

GALLERY_PAGE = 48
MAIN_KINDS = ("ground_truth", "final")  # drawn large; the VDVAE guess and the ablations beside them, smaller
SMALL_KINDS = ("vdvae",) + ABLATION_KINDS
MAIN_HEIGHT = 440  # pixels: the seen image and the final reconstruction (>= 384 px wide at 1440x900)
SMALL_HEIGHT = 200


def caption_words(caption: str) -> set[str]:
    """The lower-case words of a caption ("A red, colored bus" -> {"a", "red", "colored", "bus"})."""
    return set(re.findall(r"[\w'-]+", caption.lower()))


def _with_plurals(words: set[str]) -> set[str]:
    """``words`` and their forms one English "-s" / "-es" away ("face" <-> "faces", "bus" <-> "buses"), so a search
    for "faces" finds captions that say "a face" and the other way round."""
    forms = set(words)
    for w in words:
        forms |= {w + "s", w + "es"}
        if len(w) > 3 and w.endswith("es"):
            forms.add(w[:-2])
        if len(w) > 2 and w.endswith("s"):
            forms.add(w[:-1])
    return forms


@dataclass(frozen=True)
class TrialView:
    """Everything the tab shows for one trial.

    Attributes
    ----------
    index : int
        Position of the trial in its bundle (0-based; the header and slider count from 1).
    images : dict of str to str or None
        Path of each image kind's PNG (None where the bundle lacks that kind).
    header : str
        Markdown line naming the bundle, the trial and its image id.
    captions : str
        Markdown list of the captions.
    metric_names : list of str
    metric_rows : list of list
        One row per image kind that has metrics: [label, value per metric].
    image_id : int
        The NSD image id shown (shared by every subject's bundle).
    alt : dict of str to str
        Alt text of each image kind ("Final reconstruction, subject 1, image 97").
    """

    index: int
    images: dict[str, str | None]
    header: str
    captions: str
    metric_names: list[str]
    metric_rows: list[list]
    image_id: int = -1
    alt: dict[str, str] | None = None


class BrowseHandlers:
    """The Browse tab's actions, independent of gradio."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def subjects(self) -> list[tuple[str, str]]:
        """Dropdown choices: (label, bundle key) for every bundle found."""
        return self.state.choices()

    def trial(self, bundle_name: str, index: int) -> TrialView:
        """The view of trial ``index`` (0-based) of a bundle (reads no image: paths only)."""
        bundle = self.state.bundle(bundle_name)
        index = int(index)
        if not 0 <= index < bundle.n_trials:
            raise ValueError(f"trial: {bundle.name} has trials 0..{bundle.n_trials - 1}, got {index}.")
        record = bundle.trials[index]
        problems = {k: bundle.image_problem(index, k) for k in bundle.kinds}  # missing, unreadable, linked out
        images = {k: None if problems.get(k) else str(bundle.image_path(index, k)) if k in bundle.kinds else None
                  for k in IMAGE_KINDS}
        metrics = bundle.trial_metrics(index)
        names = sorted({name for table in metrics.values() for name in table})
        rows = [[text.KIND_LABELS[k]] + [_fmt(metrics[k].get(n)) for n in names]
                for k in IMAGE_KINDS if k in metrics]
        captions = "\n".join(f"- {text.plain(c)}" for c in record.captions) or "_(no caption)_"
        header = (f"**{text.plain(self.state.label(bundle))}** · trial {index + 1} of "
                  f"{bundle.n_trials} · image id {record.trial_id} · "
                  f"{text.protocol_label(bundle.manifest.settings.get('protocol', 'braindiff'))}")
        header += "".join(f"\n\n{text.IMAGE_PROBLEM.format(problem=text.plain(p))}" for p in problems.values() if p)
        if not bundle.decoded:
            header += f"\n\n{text.CEILING_NOTE}"
        absent = [text.KIND_LABELS[k] for k in IMAGE_KINDS if k not in bundle.kinds]
        if absent:  # their panels stay empty: say why
            header += f"\n\n{text.NOT_STORED.format(kinds=', '.join(absent))}"
        alt = {k: text.alt_text(k, bundle.subject, record.trial_id, bundle.features) for k in IMAGE_KINDS}
        return TrialView(index, images, header, captions, names, rows, int(record.trial_id), alt)

    def index_of(self, bundle_name: str, trial_id: int) -> int | None:
        """Index of the trial showing image ``trial_id`` in a bundle, None if it has none."""
        for record in self.state.bundle(bundle_name).trials:
            if record.trial_id == int(trial_id):
                return record.index
        return None

    def jump(self, bundle_name: str, trial_id: int) -> int:
        """Index of the trial showing image ``trial_id``; ValueError if the bundle has none."""
        index = self.index_of(bundle_name, trial_id)
        if index is None:
            raise ValueError(text.UNKNOWN_ID.format(trial_id=int(trial_id), bundle=bundle_name))
        return index

    def search(self, bundle_name: str, query: str) -> list[int]:
        """Trials whose captions hold every word of ``query`` as a whole word, or whose image id is ``query``.

        "red" matches "a red bus", not "colored"; "red bus" needs both words in one caption; "faces" matches "a
        face" and "face" matches "two faces" (plurals in -s / -es). An empty query matches every trial.
        """
        bundle = self.state.bundle(bundle_name)
        query = (query or "").strip()
        words = caption_words(query)
        if not words:
            return list(range(bundle.n_trials))
        return [t.index for t in bundle.trials
                if query == str(t.trial_id) or any(words <= _with_plurals(caption_words(c)) for c in t.captions)]

    def thumbnails(self, bundle_name: str, indices: list[int], page: int = 0) -> list[tuple[str, str]]:
        """Gallery items (ground-truth path, label) of page ``page`` (0-based) of ``indices``."""
        bundle = self.state.bundle(bundle_name)
        start = int(page) * GALLERY_PAGE
        items = [(_shown(bundle, i, "ground_truth"), f"#{i + 1} · id {bundle.trials[i].trial_id}")
                 for i in indices[start:start + GALLERY_PAGE]]
        return [item for item in items if item[0] is not None]

    def across_subjects(self, bundle_name: str, trial_id: int) -> list[tuple[str, str]]:
        """One image across the subjects (the paper's Figure 3): the seen image, then each subject's guess and final.

        Every bundle of the same tier that holds image ``trial_id`` contributes two items, in subject order; bundles
        made from true features (no subject's brain) are left out.
        """
        bundle = self.state.bundle(bundle_name)
        index = self.index_of(bundle_name, trial_id)
        if index is None:
            return []
        items = [(_shown(bundle, index, "ground_truth"), text.across_caption("ground_truth", None, trial_id))]
        for other in self.state.bundles:
            if other.tier != bundle.tier or not other.decoded:
                continue
            i = self.index_of(other.key, trial_id)
            if i is None:
                continue
            for kind in ("vdvae", "final"):
                if kind in other.kinds and not other.image_problem(i, kind):
                    items.append((str(other.image_path(i, kind)), text.across_caption(kind, other.subject, trial_id)))
        return [item for item in items if item[0] is not None]


def _shown(bundle, index: int, kind: str) -> str | None:
    """The path of an image the app may show, None when it is missing, damaged or links outside its bundle (the
    trial view names the problem; galleries leave the item out)."""
    return None if bundle.image_problem(index, kind) else str(bundle.image_path(index, kind))


def _fmt(value: float | None) -> str:
    if value is None or value != value:  # NaN
        return "–"
    return f"{value:.3f}"


def _page_info(n: int, page: int) -> str:
    if n <= GALLERY_PAGE:
        return ""
    start = page * GALLERY_PAGE
    return text.SEARCH_PAGE.format(first=start + 1, last=min(start + GALLERY_PAGE, n), n=n, page=page + 1,
                                   pages=-(-n // GALLERY_PAGE))


def build_browse_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the Browse tab inside ``app`` (an open ``gr.Blocks``); returns its components keyed ``browse.<name>``.

    On page load the tab opens the URL's subject and image (``?subject=demo-subj01&image=97``) when given, else
    the default bundle (the demo's subject 1 when present) at its first trial.
    """
    handlers = BrowseHandlers(state)
    choices = handlers.subjects()
    default = state.default_bundle
    n_trials = state.bundle(default).n_trials if default else 1

    def panel(kind: str, height: int, classes: str) -> gr.Image:
        return gr.Image(label=text.KIND_LABELS[kind], type="filepath", interactive=False, show_label=True,
                        buttons=["fullscreen"], height=height, min_width=120, elem_classes=classes,
                        elem_id=f"browse-{kind}")

    with gr.Tab(text.BROWSE_TAB, id="browse"):
        status = gr.Markdown(_status_message(state), visible=not state.bundles or bool(state.problems))
        with gr.Row():
            subject = gr.Dropdown(choices=choices, value=default, label=text.SUBJECT, scale=3)
            refresh = gr.Button(text.REFRESH, scale=0, size="sm")
        with gr.Row():
            trial = bounded.Slider(1, max(n_trials, 2), value=1, step=1, precision=0, label=text.TRIAL, scale=4,
                                   elem_id="browse-trial")
            jump_id = gr.Textbox(label=text.JUMP_ID, placeholder=text.JUMP_PLACEHOLDER, scale=1, max_lines=1,
                                 elem_id="browse-jump-id")
            jump = gr.Button(text.JUMP, scale=0, size="sm")
        with gr.Row(equal_height=True):
            header = gr.Markdown(elem_id="browse-header")
            copy = gr.Button(text.COPY_LINK, scale=0, size="sm", elem_id="browse-copy-link")
        image_id = gr.State(None)  # the NSD image shown: kept when the subject changes
        images: dict[str, gr.Image] = {}
        with gr.Row(equal_height=False, elem_id="browse-panels"):
            for kind in MAIN_KINDS:
                with gr.Column(scale=2, min_width=390):
                    images[kind] = panel(kind, MAIN_HEIGHT, "bd-panel bd-main")
            with gr.Column(scale=2, min_width=260):
                with gr.Row():
                    images["vdvae"] = panel("vdvae", SMALL_HEIGHT, "bd-panel bd-small")
                    images["no_vdvae"] = panel("no_vdvae", SMALL_HEIGHT, "bd-panel bd-small")
                with gr.Row():
                    images["no_text"] = panel("no_text", SMALL_HEIGHT, "bd-panel bd-small")
                    images["no_vision"] = panel("no_vision", SMALL_HEIGHT, "bd-panel bd-small")
                show_ablations = gr.Checkbox(value=True, label=text.SHOW_ABLATIONS)
        with gr.Row():
            captions = gr.Markdown(label=text.CAPTION)
            metrics = gr.Dataframe(label=text.METRICS, interactive=False, wrap=True, visible=False,
                                   elem_id="browse-metrics")
        with gr.Accordion(text.ACROSS_SUBJECTS, open=True):
            across = gr.Gallery(label=text.ACROSS_SUBJECTS, show_label=False, columns=9, height="auto",
                                allow_preview=True, object_fit="contain", elem_id="browse-across",
                                elem_classes="bd-pixelated")
        with gr.Row():
            query = gr.Textbox(label=text.SEARCH, placeholder=text.SEARCH_PLACEHOLDER, scale=4)
            search = gr.Button(text.SEARCH, scale=0, size="sm")
        hits_info = gr.Markdown(elem_id="browse-hits")
        hits = gr.State([])
        page = gr.State(0)
        gallery = gr.Gallery(label=text.RESULTS, columns=8, height=240, allow_preview=False,
                             elem_classes="bd-pixelated")
        with gr.Row():
            prev_page = gr.Button(text.PREV_PAGE, size="sm", scale=0)
            page_info = gr.Markdown(elem_id="browse-page")
            next_page = gr.Button(text.NEXT_PAGE, size="sm", scale=0)
        # API-only: 0-based trial indices (the slider counts from 1); never shown.
        api_index = gr.Number(visible=False, precision=0)
        api_button = gr.Button(visible=False)

    ordered = [images[k] for k in IMAGE_KINDS]
    trial_outputs = [header, *ordered, captions, metrics]

    def view_outputs(bundle_name: str | None, index: int, across_too: bool = True):
        if not bundle_name:
            return ["", *[None] * len(images), "", gr.update(visible=False)], None, []
        try:
            view = handlers.trial(bundle_name, int(index))
        except (ValueError, IndexError) as exc:
            raise gr.Error(text.toast(str(exc)), print_exception=False) from None
        table = gr.update(value={"headers": ["image", *view.metric_names], "data": view.metric_rows},
                          visible=True) if view.metric_rows else gr.update(value=None, visible=False)
        captions_md = f"**{text.CAPTION}**\n\n{view.captions}"
        if not view.metric_rows:
            captions_md += "\n\n" + text.NOT_EVALUATED.format(path=state.bundle(bundle_name).path)
        pictures = [gr.update(value=view.images[k], alt_text=view.alt[k]) if view.images[k] else None
                    for k in IMAGE_KINDS]
        return ([view.header, *pictures, captions_md, table], view.image_id,
                handlers.across_subjects(bundle_name, view.image_id) if across_too else [])

    def show(bundle_name: str | None, index: float):
        """API: the view of trial ``index`` (0-based)."""
        return view_outputs(bundle_name, int(index or 0), across_too=False)[0]  # its outputs lack the gallery

    def show_number(bundle_name: str | None, number: float):
        shown, shown_id, gallery_items = view_outputs(bundle_name, int(number or 1) - 1)
        return [*shown, shown_id, gallery_items]

    def toggle(ablations: bool):
        return [gr.update(visible=bool(ablations)) for _ in ABLATION_KINDS]

    def select(bundle_name: str | None, current_id: int | None):
        """A subject chosen: the same image when that subject saw it, else trial 1; the gallery lists all."""
        if not bundle_name:
            return gr.update(), [], [], 0, ""
        index = handlers.index_of(bundle_name, current_id) if current_id is not None else None
        indices = handlers.search(bundle_name, "")
        n = state.bundle(bundle_name).n_trials
        return (gr.update(maximum=max(n, 2), value=(index or 0) + 1), indices,
                handlers.thumbnails(bundle_name, indices), 0, _page_info(len(indices), 0))

    def do_jump(bundle_name: str | None, trial_id: str | float | None):
        """API: the 0-based index of the trial showing image ``trial_id``."""
        typed = "" if trial_id is None else str(trial_id).strip()
        if not typed.isdigit():
            raise gr.Error(text.toast(text.JUMP_NOT_A_NUMBER.format(typed=typed)), print_exception=False)
        if not bundle_name:
            raise gr.Error(text.toast(text.UNKNOWN_ID.format(trial_id=typed, bundle=bundle_name)),
                           print_exception=False)
        try:
            return handlers.jump(bundle_name, int(typed))
        except ValueError as exc:
            raise gr.Error(text.toast(str(exc)), print_exception=False) from None

    def jump_number(bundle_name: str | None, trial_id: str | float | None):
        """The slider's trial number for image ``trial_id``; an id that is not there leaves the slider where it was
        (a warning says why: a raised error would mark the slider itself as failed)."""
        try:
            return do_jump(bundle_name, trial_id) + 1
        except gr.Error as exc:
            gr.Warning(exc.message)  # escaped where it was raised
            return gr.update()

    def do_search(bundle_name: str | None, q: str):
        if not bundle_name:
            return [], [], ""
        indices = handlers.search(bundle_name, q)
        info = (text.search_hits(len(indices), q) if indices
                else text.NO_MATCH.format(bundle=bundle_name, query=q))
        return indices, handlers.thumbnails(bundle_name, indices), info

    def first_page(indices: list[int]):
        return 0, _page_info(len(indices or []), 0)

    def turn(step: int):
        def handler(bundle_name: str | None, indices: list[int], current: int):
            if not bundle_name or not indices:
                return [], 0, ""
            pages = -(-len(indices) // GALLERY_PAGE)
            new = min(max(int(current) + step, 0), pages - 1)
            return handlers.thumbnails(bundle_name, indices, new), new, _page_info(len(indices), new)
        return handler

    def pick(indices: list[int], current: int, evt: gr.SelectData):
        return indices[int(current) * GALLERY_PAGE + evt.index] + 1

    def browse_picker(current: str | None):
        """After a rescan (:meth:`AppState.rescan`): the new choices, the same bundle when still there."""
        value = state.key_of(current) or state.default_bundle
        return gr.update(choices=handlers.subjects(), value=value), gr.update(
            value=_status_message(state), visible=not state.bundles or bool(state.problems))

    select_outputs = [trial, hits, gallery, page, page_info]
    subject.change(select, [subject, image_id], select_outputs, api_name="select_subject").then(
        show_number, [subject, trial], [*trial_outputs, image_id, across], api_name=False).then(
        None, [subject, header], None, js=URL_JS, api_name=False)
    # A trial that cannot be shown (a damaged bundle) marks the header alone; the toast names the problem.
    trial.change(show_number, [subject, trial], [*trial_outputs, image_id, across], api_name="show_trial_number",
                 trigger_mode="always_last", show_progress_on=[header]).then(
        None, [subject, header], None, js=URL_JS, api_name=False)
    api_button.click(show, [subject, api_index], trial_outputs, api_name="show_trial")
    api_button.click(do_jump, [subject, jump_id], [api_index], api_name="jump_to_trial")
    show_ablations.change(toggle, [show_ablations], [images[k] for k in ABLATION_KINDS],
                          api_name="toggle_ablations")
    jump.click(jump_number, [subject, jump_id], [trial], api_name=False)  # API clients: jump_to_trial
    jump_id.submit(jump_number, [subject, jump_id], [trial], api_name=False)
    search.click(do_search, [subject, query], [hits, gallery, hits_info], api_name="search_captions").then(
        first_page, [hits], [page, page_info], api_name=False)
    query.submit(do_search, [subject, query], [hits, gallery, hits_info], api_name=False).then(
        first_page, [hits], [page, page_info], api_name=False)
    prev_page.click(turn(-1), [subject, hits, page], [gallery, page, page_info], api_name="results_previous_page")
    next_page.click(turn(+1), [subject, hits, page], [gallery, page, page_info], api_name="results_next_page")
    gallery.select(pick, [hits, page], [trial], api_name="pick_thumbnail")
    state.pickers.append(([subject], [subject, status], browse_picker))  # ui/__init__.py wires `refresh` to them
    copy.click(None, None, None, js=COPY_JS, api_name=False)

    def from_url(current: str | None, request: gr.Request):
        """Page load: the URL's ``subject`` (a bundle key) and ``image`` (an NSD image id), where valid."""
        params = dict(request.query_params) if request is not None else {}
        # a key, or a bare name (the first folder's bundle of that name: AppState.bundle)
        linked = state.key_of(params["subject"]) if "subject" in params else None
        name = linked or current
        if "subject" in params and not linked:  # a stale or mistyped link: say so
            gr.Warning(text.toast(text.URL_NO_BUNDLE.format(subject=params["subject"], shown=name or "nothing")))
        try:
            wanted = int(params["image"]) if "image" in params else None
        except ValueError:
            wanted = None
            gr.Warning(text.toast(text.URL_BAD_IMAGE.format(image=params["image"])))
        if wanted is not None and name and handlers.index_of(name, wanted) is None:
            gr.Warning(text.toast(text.UNKNOWN_ID.format(trial_id=wanted, bundle=name) + " " + text.URL_FIRST_TRIAL))
        return name, wanted

    app.load(from_url, [subject], [subject, image_id], api_name=False).then(
        select, [subject, image_id], select_outputs, api_name=False).then(
        show_number, [subject, trial], [*trial_outputs, image_id, across], api_name=False)

    components = {"subject": subject, "trial": trial, "show_ablations": show_ablations, "gallery": gallery,
                  "query": query, "header": header, "captions": captions, "metrics": metrics, "hits": hits,
                  "image_id": image_id, "across": across, "page_info": page_info, "copy": copy, "refresh": refresh}
    components.update({f"image_{k}": v for k, v in images.items()})
    return {f"browse.{k}": v for k, v in components.items()}


# The address bar follows the view (?tab=browse&subject=...&image=...), so a copied link restores it.
URL_JS = """(subject, header) => {
  const found = /image id (\\d+)/.exec(header || '');
  const imageId = found ? found[1] : null;
  const url = new URL(window.location.href);
  if (subject) url.searchParams.set('subject', subject);
  if (imageId !== null && imageId !== undefined) url.searchParams.set('image', imageId);
  window.history.replaceState(null, '', url);
}"""
COPY_JS = """() => {
  const link = window.location.href;
  if (navigator.clipboard) { navigator.clipboard.writeText(link).catch(() => {}); }
  const button = document.getElementById('browse-copy-link');
  if (button) { button.dataset.link = link; button.title = link; }
  return [];
}"""


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

"""The Gradio app: one builder per tab, one :class:`AppState`, every event a named API endpoint."""

from __future__ import annotations

import re

import gradio as gr

from braindiff_app.config import Settings
from braindiff_app.ui import bounded, text
from braindiff_app.ui.about import build_about_tab
from braindiff_app.ui.brain_response import build_brain_response_tab
from braindiff_app.ui.browse import build_browse_tab
from braindiff_app.ui.classroom import CSS as CLASSROOM_CSS
from braindiff_app.ui.classroom import KEYS_JS, build_classroom_tab
from braindiff_app.ui.metrics import build_metrics_tab
from braindiff_app.ui.roi import CSS as ROI_CSS
from braindiff_app.ui.roi import build_roi_tab
from braindiff_app.ui.state import AppState, served_paths

__all__ = ["CSS", "QUEUE_SIZE", "MAX_FILE_SIZE", "CACHE_LIFETIME", "TAB_IDS", "AppState", "build_app", "launch_app",
           "parse_auth"]

CSS = CLASSROOM_CSS + ROI_CSS + """
.bd-main img { image-rendering: pixelated; }
.bd-small img { image-rendering: pixelated; }
#browse-across .thumbnail-item img, #browse-across img { image-rendering: pixelated; }
#browse-across .caption-label { white-space: normal; }  /* a narrow window wraps a caption, never cuts it */
#browse-metrics th, #browse-metrics th * { word-break: normal; overflow-wrap: normal; }  /* "PixCorr", not "PixCor r" */
/* Flatmaps: room above the map for the panel's floating label and buttons, which covered its hemisphere and
   "dorsal" labels (a click still maps to the map's own pixels: Gradio measures the image element). */
.bd-map .image-container { padding-top: 2.6em; box-sizing: border-box; }
"""
# The URL's ?tab= values, in tab order (the tab labels are in ui/text.py).
TAB_IDS = {"browse": text.BROWSE_TAB, "roi": text.ROI_TAB, "brain": text.BR_TAB, "metrics": text.METRICS_TAB,
           "classroom": text.CLASSROOM_TAB, "about": text.ABOUT_TAB}

# One tab stop per image panel: gradio wraps each image in a focusable button (besides the panel's fullscreen
# button); keyboard users reach the panel's fullscreen button, the image itself is skipped.
ONE_TAB_STOP_JS = """() => {
  const panels = ['.bd-panel', '.classroom-big', '.classroom-choice'];
  const selector = panels.map((p) => p + ' button:has(> .image-frame)').join(', ');
  const skip = () => document.querySelectorAll(selector)
    .forEach((b) => { if (b.tabIndex !== -1) b.tabIndex = -1; });
  skip();
  new MutationObserver(skip).observe(document.body, {childList: true, subtree: true});
}"""

# The address bar follows the chosen tab (?tab=...), so a copied link opens the same tab.
TAB_URL_JS = """() => {
  if (window.bdTabUrl) return;
  window.bdTabUrl = true;
  const ids = %s;
  document.addEventListener('click', (event) => {
    const button = event.target.closest && event.target.closest('button[role="tab"]');
    if (!button) return;
    const id = ids[button.innerText.trim()];
    if (!id) return;
    const url = new URL(window.location.href);
    url.searchParams.set('tab', id);
    window.history.replaceState(null, '', url);
  }, true);
}"""

QUEUE_SIZE = 256  # events waiting at most: a class of ~30 opening the app at once sends ~6 events each
#: Largest upload gradio accepts (recipes are kilobytes, canvas layers a few megabytes).
MAX_FILE_SIZE = "20mb"
#: gradio's cache (uploads, images sent to browsers): files older than this many seconds are deleted, checked as often.
CACHE_LIFETIME = 3600
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``"user:password"`` -> ``("user", "password")`` (None for None or ""); ValueError naming the form otherwise."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("auth: expected 'user:password' (--auth or BRAINDIFF_AUTH), got a value without both "
                         "parts.")
    return user, password


def build_app(settings: Settings) -> tuple[gr.Blocks, AppState, dict[str, gr.components.Component]]:
    """Build the whole app.

    Parameters
    ----------
    settings : Settings
        Resolved configuration (bundle folders, tier, models).

    Returns
    -------
    app : gr.Blocks
        Not launched; call ``app.queue().launch(...)``.
    state : AppState
    components : dict
        Every tab's components, keyed ``"tab.elem"``.
    """
    state = AppState(settings)
    components: dict[str, gr.components.Component] = {}
    with gr.Blocks(title=text.TITLE, analytics_enabled=False, delete_cache=(CACHE_LIFETIME, CACHE_LIFETIME)) as app:
        gr.Markdown(f"# {text.TITLE}\n{text.INTRO}")
        with gr.Tabs(selected="browse") as tabs:
            components.update(build_browse_tab(app, state))
            components.update(build_roi_tab(app, state))
            components.update(build_brain_response_tab(app, state))
            components.update(build_metrics_tab(app, state))
            components.update(build_classroom_tab(app, state))
            components.update(build_about_tab(app, state))
        for block in app.blocks.values():  # the ROI studio's tab gets its URL id here (ui/roi.py builds it)
            if isinstance(block, gr.Tab) and block.label == text.ROI_TAB and block.id is None:
                block.id = "roi"
        bounded.keep_boxes_in_range(app)

        def tab_from_url(request: gr.Request):
            wanted = dict(request.query_params).get("tab") if request is not None else None
            if wanted is not None and wanted not in TAB_IDS:  # a mistyped link: say so rather than open Browse mutely
                gr.Warning(text.toast(text.URL_BAD_TAB.format(tab=wanted, tabs=", ".join(TAB_IDS))))
            return gr.Tabs(selected=wanted) if wanted in TAB_IDS else gr.Tabs()

        app.load(tab_from_url, None, [tabs], api_name=False)
        # "Rescan bundles" (on Browse) refreshes every tab's bundle pickers in one event (AppState.rescan).
        # Its API parameters are named <tab>_<label> (browse_subject, metrics_bundle, ...), not param_0...
        pickers_in = {re.sub(r"\W+", "_", f"{fn.__name__.removesuffix('_picker')}_{c.label or i}".lower()): c
                      for inputs, _, fn in state.pickers for i, c in enumerate(inputs)}
        pickers_out = [c for _, outputs, _ in state.pickers for c in outputs]

        def rescan_bundles(**values):
            return state.rescan(*(values[name] for name in pickers_in))

        components["browse.refresh"].click(rescan_bundles, None, pickers_out, inputs_kwargs=pickers_in,
                                           api_name="rescan_bundles")
        tab_ids = "{" + ", ".join(f'"{label}": "{key}"' for key, label in TAB_IDS.items()) + "}"
        app.load(None, js=TAB_URL_JS % tab_ids, api_name=False)
        app.load(None, js=KEYS_JS, api_name=False)
        app.load(None, js=ONE_TAB_STOP_JS, api_name=False)
    _hide_value_loaders(app)
    components["app.tabs"] = tabs
    app.braindiff_state = state  # launch_app serves the files of the bundles this state found
    return app, state, components


def _hide_value_loaders(app: gr.Blocks) -> None:
    """Keep gradio's automatic events (a ``gr.State(list)`` fills itself on load) out of the API page."""
    loaders = {id(c.load_event_to_attach[0]) for c in app.blocks.values()
               if getattr(c, "load_event_to_attach", None)}
    for fn in app.fns.values():
        if id(fn.fn) in loaders:
            fn.api_visibility = "private"


def launch_app(app: gr.Blocks, settings: Settings, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
               block: bool = True, quiet: bool = False, auth: tuple[str, str] | None = None) -> None:
    """Launch ``app`` with the queue on, analytics off and only the bundle folders served.

    Parameters
    ----------
    app : gr.Blocks
        From :func:`build_app`.
    settings : Settings
        Its configuration. gradio may serve only the PNG images inside the bundles found (their ``images/``
        folders, non-PNG files blocked, links leaving a bundle refused), updated at every rescan.
    host, port, share
        Where to listen; ``share`` also opens a public gradio.live link.
    block : bool, default True
        Keep the calling thread in the server loop (False: return at once, for tests and benchmarks).
    quiet : bool, default False
        Suppress gradio's start-up messages.
    auth : (user, password), optional
        Ask for this login (see :func:`parse_auth`). Serving beyond this machine (``share`` or a host other than
        localhost) without it warns: anyone who reaches the address can use the app.
    """
    if (share or host not in _LOCAL_HOSTS) and auth is None:
        import warnings

        where = "a public gradio.live link" if share else f"host {host} (reachable from other machines)"
        warnings.warn(f"serving on {where} without authentication: anyone who reaches it can use the app and its "
                      "CPU; pass --auth user:password (or set BRAINDIFF_AUTH).", UserWarning, stacklevel=2)
    # At most 4 events of a kind run at once (ROI generates wait together on ui/roi.py's micro-batcher, which runs
    # them in batches); a bounded queue keeps memory bounded when many users arrive at once (a full queue answers
    # "queue is full" instead of growing).
    state = getattr(app, "braindiff_state", None) or AppState(settings)
    allowed, blocked = served_paths(state)

    def serve(current: AppState) -> None:  # after a rescan: the new bundles' images, and no other file
        app.allowed_paths, app.blocked_paths = served_paths(current)

    state.listeners.append(serve)
    if getattr(app, "braindiff_roi", None) is not None:  # the ROI studio's models load while the first page opens
        app.braindiff_roi.warm()
    app.queue(default_concurrency_limit=4, max_size=QUEUE_SIZE).launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=quiet,
        # gradio reads an empty list as "take GRADIO_*_PATHS from the environment": a path that does not exist
        allowed_paths=allowed or [str(settings.home / "bundles" / "none")], blocked_paths=blocked or
        [str(settings.home / "bundles" / ".none")], footer_links=["api", "settings"], css=CSS,
        max_file_size=MAX_FILE_SIZE, auth=auth,
    )

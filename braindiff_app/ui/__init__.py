"""The Gradio app: one builder per tab, one :class:`AppState`, every event a named API endpoint."""

from __future__ import annotations

import gradio as gr

from braindiff_app.config import Settings
from braindiff_app.ui import text
from braindiff_app.ui.browse import build_browse_tab
from braindiff_app.ui.state import AppState

__all__ = ["AppState", "build_app"]


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
    with gr.Blocks(title=text.TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"# {text.TITLE}\n{text.INTRO}")
        components.update(build_browse_tab(app, state))
    return app, state, components

"""The About tab: the method in plain words, the two-stage flow, and which tier is shown."""

from __future__ import annotations

import gradio as gr

from braindiff_app.config import ASSETS_DIR
from braindiff_app.ui import text
from braindiff_app.ui.state import AppState

__all__ = ["build_about_tab"]

FLOW_FIGURE = ASSETS_DIR / "about_flow.png"  # drawn by docs/draw_flow.py


def build_about_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the About tab inside ``app``; returns its components keyed ``about.<name>``."""
    with gr.Tab(text.ABOUT_TAB, id="about"):
        tier = gr.Markdown(text.TIER_NOTE[state.settings.tier])
        figure = gr.Image(str(FLOW_FIGURE), show_label=False, interactive=False, buttons=["fullscreen"])
        body = gr.Markdown(text.ABOUT)
    return {"about.tier": tier, "about.figure": figure, "about.body": body}

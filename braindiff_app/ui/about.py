"""The About tab: the method in plain words, the two-stage flow, and which tier is shown."""

from __future__ import annotations

import gradio as gr

from braindiff_app.config import ASSETS_DIR
from braindiff_app.stage2 import Stage2Settings
from braindiff_app.ui import text
from braindiff_app.ui.state import AppState

__all__ = ["about_settings", "build_about_tab"]

FLOW_FIGURE = ASSETS_DIR / "about_flow.png"  # drawn by docs/draw_flow.py


# Sizes on the real tier when no bundle says otherwise: VDVAE ImageNet-64 and Versatile Diffusion at 512 px.
REAL_SIZES = {"vdvae_size": 64, "image_size": 512}


def about_settings(state: AppState) -> dict[str, object]:
    """The numbers the About text quotes, for the tier loaded: its bundles' manifests, else the tier's defaults.

    Returns
    -------
    dict
        ``vdvae_size`` and ``image_size`` (pixels), ``steps`` and ``start_steps`` (denoising steps in all and
        those run from the VDVAE guess), ``vision_pct`` and ``text_pct``, ``tier_label``.
    """
    tier = state.settings.tier
    stage2 = Stage2Settings.for_tier(tier)
    sizes = dict(REAL_SIZES)
    bundles = [b for b in state.bundles if b.tier == tier]
    if bundles:
        bundle = bundles[0]
        stage2 = bundle.manifest.stage2 or stage2
        sizes["image_size"] = int(bundle.manifest.image_size or sizes["image_size"])
        try:
            from PIL import Image

            with Image.open(bundle.image_path(0, "vdvae")) as image:
                sizes["vdvae_size"] = image.size[0]
        except Exception:  # noqa: BLE001 - any unreadable image (incl. PIL's bomb error): keep the default size
            pass
    vision = round(100 * stage2.vision_weight)
    return {**sizes, "steps": stage2.num_inference_steps,
            "start_steps": int(stage2.strength * stage2.num_inference_steps), "vision_pct": vision,
            "text_pct": 100 - vision, "tier_label": text.TIER_LABEL.get(tier, tier)}


def build_about_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the About tab inside ``app``; returns its components keyed ``about.<name>``."""
    with gr.Tab(text.ABOUT_TAB, id="about"):
        tier = gr.Markdown(text.TIER_NOTE[state.settings.tier])
        figure = gr.Image(str(FLOW_FIGURE), show_label=False, interactive=False, buttons=["fullscreen"],
                          alt_text=text.ABOUT_FIGURE_ALT)
        body = gr.Markdown(text.ABOUT.format(**about_settings(state)))
    return {"about.tier": tier, "about.figure": figure, "about.body": body}

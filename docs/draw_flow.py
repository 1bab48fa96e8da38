"""Draw the About tab's figure: the paper's two-stage flow (Figures 1-2), in plain boxes and arrows.

It names no size, step count or weight: those differ between the tiers, and the About text beneath the figure
quotes the loaded tier's own (ui/about.py ``about_settings``).

Usage: python docs/draw_flow.py   (writes braindiff_app/assets/about_flow.png)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "braindiff_app" / "assets" / "about_flow.png"

BOXES = {
    # name: (x, y, w, h, colour, label)
    "fmri": (0.0, 2.1, 2.0, 1.0, "#cfe3f7", "fMRI pattern\n(visual cortex voxels)"),
    "r_vdvae": (2.5, 3.6, 1.7, 0.8, "#f9e0b5", "ridge →\nVDVAE latents"),
    "r_vis": (2.5, 2.2, 1.7, 0.8, "#f9e0b5", "ridge →\nCLIP-vision"),
    "r_txt": (2.5, 0.8, 1.7, 0.8, "#f9e0b5", "ridge →\nCLIP-text"),
    "vdvae": (4.8, 3.5, 2.3, 1.0, "#d9f2d0", "Stage 1: VDVAE\ndecoder → blurry\nfirst guess"),
    "vd": (7.6, 1.9, 2.1, 1.4, "#e6d9f5", "Stage 2: Versatile\nDiffusion img2img\n(guided by CLIP)"),
    "out": (10.1, 2.1, 1.6, 1.0, "#fbd3d3", "final\nreconstruction"),
}
ARROWS = [
    ("fmri", "r_vdvae"), ("fmri", "r_vis"), ("fmri", "r_txt"), ("r_vdvae", "vdvae"),
    ("vdvae", "vd", "  noised\n  part-way"), ("r_vis", "vd"), ("r_txt", "vd"), ("vd", "out"),
]


def centre(name: str, side: str) -> tuple[float, float]:
    x, y, w, h, *_ = BOXES[name]
    return (x + w, y + h / 2) if side == "right" else (x, y + h / 2)


def main() -> None:
    fig, ax = plt.subplots(figsize=(12, 4.8), dpi=110)
    for x, y, w, h, colour, label in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#444", lw=1.2))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=10)
    for start, end, *note in ARROWS:
        a, b = centre(start, "right"), centre(end, "left")
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=1.3, color="#333"))
        if note:
            ax.text((a[0] + b[0]) / 2 + 0.1, (a[1] + b[1]) / 2 + 0.12, note[0], ha="left", fontsize=9, color="#555")
    ax.text(0.2, 4.75, "Brain-Diffuser: fMRI → low-level guess (stage 1) → semantic refinement (stage 2)",
            fontsize=12, weight="bold")
    ax.set_xlim(-0.2, 12)
    ax.set_ylim(0.5, 5.0)
    ax.axis("off")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

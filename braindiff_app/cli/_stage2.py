"""Stage-2 flags shared by ``braindiff reconstruct`` and ``braindiff roi``: defaults and help texts come from
:class:`~braindiff_app.stage2.Stage2Settings` (the flags default to None: unset means the tier's default)."""

from __future__ import annotations

import argparse

from braindiff_app.config import TIERS
from braindiff_app.stage2 import Stage2Settings

__all__ = ["FLAGS", "add_stage2_arguments", "stage2_from_args"]

#: Stage-2 field -> (flag, type, help without the default).
FLAGS = {
    "strength": ("--strength", float, "img2img strength: fraction of the DDIM schedule run from the VDVAE guess"),
    "vision_weight": ("--vision-weight", float, "vision share of the guidance mix (text gets the rest)"),
    "guidance_scale": ("--guidance-scale", float, "classifier-free guidance"),
    "num_inference_steps": ("--steps", int, "DDIM steps of the full schedule"),
}


def default_text(name: str) -> str:
    """``"default 0.75"``, or per tier when the tiers differ (``"default: 20 on the demo tier, 50 on ..."``)."""
    values = {tier: getattr(Stage2Settings.for_tier(tier), name) for tier in TIERS}
    if len(set(values.values())) == 1:
        return f"default {next(iter(values.values())):g}"
    return "default: " + ", ".join(f"{value:g} on the {tier} tier" for tier, value in values.items())


def add_stage2_arguments(parser: argparse.ArgumentParser, names=tuple(FLAGS)) -> None:
    """Add the flags of the stage-2 fields ``names`` (destinations: the field names)."""
    for name in names:
        flag, kind, help_text = FLAGS[name]
        parser.add_argument(flag, dest=name, type=kind, default=None, help=f"{help_text} ({default_text(name)})")


def stage2_from_args(args: argparse.Namespace, tier: str) -> Stage2Settings:
    """The tier's defaults (:meth:`Stage2Settings.for_tier`) with the flags that were given."""
    return Stage2Settings.for_tier(tier).with_overrides(**{name: getattr(args, name, None) for name in FLAGS})

"""Sliders and number boxes that bring a typed value back into their range instead of failing the event.

Gradio's own ``Slider`` and ``Number`` raise when the value typed into their box lies outside ``minimum..maximum``:
the event fails and every panel it feeds shows "Error" (Browse went blank at trial 999 of 100). These subclasses
clamp such a value on the server, with a warning that names the field, its range and the value used, and set the
box itself to the clamped value in the browser as it is typed (reading the range the page shows, which follows a
``gr.update(maximum=...)``). An empty box gets the field's minimum.
"""

from __future__ import annotations

import math

import gradio as gr
from gradio.components.number import Number as _GradioNumber

from braindiff_app.ui import text

__all__ = ["Number", "Slider", "clamp", "keep_boxes_in_range"]

# Runs in the browser on each `input` event: the box's own min/max attributes, so a changed maximum is honoured.
_CLAMP_JS = """(v) => {
  const box = document.querySelector('#%s input[type=number]');
  if (!box || v === null || v === '' || Number.isNaN(Number(v))) return v;
  let x = Number(v);
  if (box.min !== '') x = Math.max(x, Number(box.min));
  if (box.max !== '') x = Math.min(x, Number(box.max));
  return x;
}"""


def clamp(label: str | None, value: float | None, minimum: float | None, maximum: float | None) -> float | None:
    """``value`` brought into ``minimum..maximum`` (either may be None: unbounded), with a ``gr.Warning`` when it
    moved; a value in range comes back unchanged (an int stays an int, exact at any size). An empty box (None)
    becomes ``minimum``, a non-finite number ``minimum`` (else ``maximum``); None when the range has no end."""
    name = label or "value"
    if value is None:
        if minimum is not None:
            gr.Warning(text.toast(text.OUT_OF_RANGE_EMPTY.format(label=name, used=_shown(minimum))))
        return minimum
    if isinstance(value, float) and not math.isfinite(value):
        used = minimum if minimum is not None else maximum
        gr.Warning(text.toast(text.OUT_OF_RANGE_NOT_FINITE.format(label=name, value=value, used=_shown(used))))
        return used
    used = value
    if minimum is not None and value < minimum:
        used = minimum
    elif maximum is not None and value > maximum:
        used = maximum
    if used is not value:
        gr.Warning(text.toast(text.OUT_OF_RANGE.format(label=name, value=_shown(value), used=_shown(used),
                                                       low="" if minimum is None else _shown(minimum),
                                                       high="" if maximum is None else _shown(maximum))))
    return used


def _shown(x: float | None) -> str:
    return "nothing" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


def keep_boxes_in_range(app: gr.Blocks) -> None:
    """Give every :class:`Slider` and :class:`Number` of ``app`` its browser-side clamp (call inside ``with app``,
    after the tabs are built). Each needs an ``elem_id``: the clamp finds its box by it."""
    for block in list(app.blocks.values()):
        if isinstance(block, _Clamped):
            if not block.elem_id:
                raise ValueError(f"{type(block).__name__} {block.label!r}: needs an elem_id (the browser-side "
                                 "clamp finds its box by it).")
            block.input(None, [block], [block], js=_CLAMP_JS % block.elem_id, api_name=False,
                        show_progress="hidden")


class _Clamped:
    """The server half of :class:`Slider` and :class:`Number` (before the Gradio class in the bases; no
    ``__init__`` of its own: Gradio reads a component's settings from its ``__init__``'s signature)."""

    def preprocess(self, payload: float | None) -> float | int | None:
        value = clamp(self.label, payload, self.minimum, self.maximum)
        return value if value is None else _GradioNumber.round_to_precision(value, self.precision)


class Slider(_Clamped, gr.Slider):
    """``gr.Slider`` whose typed values are clamped to its range (see the module docstring); needs ``elem_id``."""


class Number(_Clamped, gr.Number):
    """``gr.Number`` whose typed values are clamped to its range (see the module docstring); needs ``elem_id``."""

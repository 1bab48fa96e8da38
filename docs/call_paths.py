"""Which braindiff modules a Browse click and an ROI Generate click pass through (for docs/architecture.md).

Runs the two tabs' handlers in this process on the embedded demo (no server, no browser): each is called once to
warm up (models load, caches fill), then traced with ``sys.setprofile``: every Python call whose function lives in
``braindiff_app`` is recorded by module. Prints the modules in the order first entered, the module-to-module call
edges (caller -> callee, each pair once) and the back-and-forth pairs (modules that call each other: A -> B and
B -> A), the tangles a reader has to follow.

Usage: python docs/call_paths.py [--trial 5] [--regions V1:+1,faces:+1]
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def trace(call) -> tuple[list[str], set[tuple[str, str]]]:
    """(modules entered in order, module-to-module call edges) of one call."""
    order: list[str] = []
    edges: set[tuple[str, str]] = set()
    stack: list[str] = []

    def profile(frame, event, arg):
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            caller = stack[-1] if stack else None
            stack.append(module)
            if module.startswith("braindiff_app"):
                if module not in order:
                    order.append(module)
                if caller is not None and caller.startswith("braindiff_app") and caller != module:
                    edges.add((caller, module))
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(profile)
    threading.setprofile(profile)  # threads started during the call too (the ROI studio's micro-batcher)
    try:
        call()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return order, edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trial", type=int, default=5)
    parser.add_argument("--regions", default="V1:+1,faces:+1")
    args = parser.parse_args()

    from braindiff_app.config import load_settings
    from braindiff_app.ui.browse import BrowseHandlers
    from braindiff_app.ui.roi import ROIHandlers
    from braindiff_app.ui.state import AppState

    state = AppState(load_settings(tier="demo"))
    browse = BrowseHandlers(state)
    roi = ROIHandlers(state)
    bundle = state.default_bundle
    weights = {}
    for item in args.regions.split(","):
        name, _, weight = item.partition(":")
        weights[name] = float(weight)

    def click_browse():
        browse.trial(bundle, args.trial)

    def click_generate(handlers=roi):
        subject = handlers.subjects()[0]
        handlers.generate(handlers.recipe(subject, weights, None, 1.0, 0))

    def click_generate_fresh():
        """The same click on handlers sharing the loaded models, so the batcher's worker thread starts traced."""
        fresh = ROIHandlers(state)
        fresh._models, fresh._flatmaps = roi._models, roi._flatmaps
        click_generate(fresh)

    for label, warm, call in (("Browse: show a trial", click_browse, click_browse),
                              ("ROI studio: Generate", click_generate, click_generate_fresh)):
        warm()  # warm up: models loaded, flatmaps and caches filled, as in a running app
        modules, edges = trace(call)
        both = sorted({tuple(sorted(e)) for e in edges if (e[1], e[0]) in edges})
        print(f"{label}: {len(modules)} modules, {len(edges)} call edges, {len(both)} back-and-forth pairs")
        for module in modules:
            print(f"  {module}")
        for a, b in both:
            print(f"  back and forth: {a} <-> {b}")


if __name__ == "__main__":
    main()

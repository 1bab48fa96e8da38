"""Browse speed on a 1000-trial bundle of 512x512 PNGs: opening the bundle and switching trial.

Measured side by side in one process:
- open: our lazy ``open_bundle`` vs an eager reader that decodes every ground-truth image (the naive design);
- switch (handler): ``BrowseHandlers.trial`` (paths only) vs decoding the trial's six PNGs into arrays and
  re-encoding them (what serving numpy images would cost);
- switch (server side): gradio's whole processing of the ``/show_trial`` event (pre-processing, handler,
  post-processing with its file caching) for one session, without HTTP: the number the goal (< 150 ms) is about;
- switch (round trip): the same endpoint on a live app on localhost through gradio_client, which adds the
  queue's messages, HTTP and the client's download of the six images.

Usage: python bench/browse.py [--trials 1000] [--size 512] [--switches 30] [--cache /tmp/braindiff-bench]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from braindiff_app.bundles import IMAGE_KINDS, open_bundle  # noqa: E402
from tests.factories import make_bundle  # noqa: E402


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--switches", type=int, default=30)
    parser.add_argument("--cache", default="/tmp/braindiff-bench", help="where the synthetic bundle is kept")
    args = parser.parse_args()

    root = Path(args.cache) / f"browse-{args.trials}x{args.size}"
    name = "bench-subj01"
    if not (root / name / "trials.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        make_bundle(root, name=name, n_trials=args.trials, size=args.size)
        print(f"wrote the synthetic bundle in {time.perf_counter() - start:.0f} s ({root / name})")
    path = root / name

    t_lazy, bundle = timed(lambda: open_bundle(path), repeat=5)
    t_eager, _ = timed(lambda: [open_bundle(path).image(i, "ground_truth") for i in range(args.trials)])
    print(f"open   lazy {t_lazy * 1e3:8.1f} ms | eager (decode every image) {t_eager * 1e3:8.1f} ms | "
          f"ratio {t_eager / t_lazy:6.0f}x")

    from braindiff_app.config import load_settings
    from braindiff_app.ui import build_app, launch_app
    from braindiff_app.ui.browse import BrowseHandlers
    from braindiff_app.ui.state import AppState

    settings = load_settings(home=Path(args.cache) / "home", extra_bundle_dirs=(root,))
    handlers = BrowseHandlers(AppState(settings))
    rng = np.random.default_rng(0)
    picks = rng.integers(0, args.trials, args.switches)

    def decode_reencode(i: int) -> None:
        for kind in IMAGE_KINDS:
            buffer = io.BytesIO()
            Image.fromarray(bundle.image(int(i), kind)).save(buffer, format="PNG")

    t_handler = statistics.median(timed(lambda i=i: handlers.trial(name, int(i)))[0] for i in picks)
    t_numpy = statistics.median(timed(lambda i=i: decode_reencode(i))[0] for i in picks)
    print(f"switch handler {t_handler * 1e3:8.2f} ms | numpy images {t_numpy * 1e3:8.1f} ms | "
          f"ratio {t_numpy / t_handler:6.0f}x")

    import asyncio

    from gradio.state_holder import SessionState
    from gradio_client import Client

    app, _, _ = build_app(settings)
    fn = next(f for f in app.fns.values() if f.api_name == "show_trial")
    session = SessionState(app)

    def server_side(i: int) -> None:
        asyncio.run(app.process_api(block_fn=fn, inputs=[name, int(i)], state=session))

    server_side(0)  # warm up
    t_server = statistics.median(timed(lambda i=i: server_side(i))[0] for i in picks)
    print(f"switch server side (gradio process_api, {len(IMAGE_KINDS)} images of {args.size}px) "
          f"{t_server * 1e3:8.1f} ms median | goal < 150 ms | numpy images alone {t_numpy / t_server:4.1f}x slower")

    launch_app(app, settings, port=7899, block=False, quiet=True)
    try:
        client = Client("http://127.0.0.1:7899/", verbose=False)
        client.predict(name, 0, api_name="/show_trial")  # warm up
        t_round = statistics.median(
            timed(lambda i=i: client.predict(name, int(i), api_name="/show_trial"))[0] for i in picks)
    finally:
        app.close()
    print(f"switch round trip via gradio_client (localhost, downloads included) {t_round * 1e3:8.1f} ms median "
          f"| {t_round / t_server:4.1f}x the server-side time")


if __name__ == "__main__":
    main()

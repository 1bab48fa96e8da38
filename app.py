"""Start the braindiff app: ``python app.py`` (http://127.0.0.1:7860), on the embedded demo by default."""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Start the braindiff app (Gradio).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--tier", choices=("demo", "real"), help="which tier's bundles to open first")
    parser.add_argument("--home", help="workspace folder (BRAINDIFF_HOME)")
    parser.add_argument("--bundles", action="append", default=[], help="extra folder of bundles (repeatable)")
    parser.add_argument("--threads", type=int, help="torch CPU threads for the ROI studio (default: the cores that "
                        "the machine's other work leaves free)")
    args = parser.parse_args(argv)

    from pathlib import Path

    from braindiff_app.config import load_settings, set_cpu_threads
    from braindiff_app.ui import build_app, launch_app

    set_cpu_threads(args.threads)
    settings = load_settings(tier=args.tier, home=args.home)
    if args.bundles:
        settings = settings.with_overrides(
            extra_bundle_dirs=settings.extra_bundle_dirs + tuple(Path(b).expanduser() for b in args.bundles))
    app, _, _ = build_app(settings)
    launch_app(app, settings, host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()

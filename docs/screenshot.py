"""Take the README's screenshot of the Browse tab on the embedded demo (docs/img/browse.png).

Starts ``python app.py`` on a free local port, opens it in headless Chromium (Debian's ``chromium`` driven by
Playwright, as the browser tests do), jumps to one test image and saves the top of the page.

Usage: python docs/screenshot.py [--image-id 97] [--out docs/img/browse.png]
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, app: subprocess.Popen, timeout: float = 180.0) -> None:
    """Poll ``url`` until it answers; fail early if the app exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"app.py exited with code {app.returncode} before serving {url}.")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"app.py did not answer at {url} within {timeout:.0f} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-id", default="97", help="test image to show (default 97)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "browse.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no Chromium binary found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(url, app)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 760})
            page.goto(url)
            page.get_by_text("trial 1 of 100").wait_for()
            page.get_by_label("Jump to image id").fill(args.image_id)
            page.get_by_role("button", name="Go", exact=True).click()
            header = page.get_by_text(re.compile(rf"trial \d+ of 100 · image id {args.image_id}$"))
            header.wait_for()
            trial = int(re.search(r"trial (\d+) of", header.inner_text()).group(1))
            page.locator(f"img[src$='{trial - 1:05d}.png']").nth(5).wait_for()  # the six panels of that trial
            if trial != 1:  # and the first trial's panels gone (its gallery thumbnail stays)
                page.wait_for_function("() => document.querySelectorAll(\"img[src$='00000.png']\").length <= 1")
            tmp = args.out.with_suffix(".tmp.png")
            page.screenshot(path=str(tmp))
            tmp.replace(args.out)
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

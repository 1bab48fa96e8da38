"""Take the README's screenshots on the embedded demo, into docs/img/.

Starts ``python app.py`` on a free local port, opens it in headless Chromium (Debian's ``chromium`` driven by
Playwright, as the browser tests do) and saves, at 1440x900 unless noted:

- ``browse.png``: Browse at one test image (a deep link, ``?subject=demo-subj01&image=97``);
- ``classroom.png``: Classroom after one answered question; ``classroom_projector.png``: its projector mode at
  1920x1080 (opened with the F key, the answer revealed);
- ``metrics.png``: the Metrics tab's tables with intervals and baselines (full page);
- ``about.png``: the About tab;
- ``roi.png``: the ROI studio after the "faces" example was generated, scrolled to the flatmap and the region
  sliders;
- ``brain.png``: the Brain response tab after "Predict and decode" on the first test image of subject 1.

Usage: python docs/screenshot.py [--image-id 97] [--out-dir docs/img]
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


def take_screenshots(browser, url: str, image_id: str) -> dict[str, bytes]:
    """Open each view and return its PNG bytes, keyed by file name (without .png)."""
    shots: dict[str, bytes] = {}
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(f"{url}/?tab=browse&subject=demo-subj01&image={image_id}")
    page.get_by_text(re.compile(rf"trial \d+ of 100 · image id {image_id}( · protocol \w+)?$")).wait_for()
    page.wait_for_function("() => (document.querySelector('#browse-final img') || {}).alt === "
                           f"'Final reconstruction, subject 1, image {image_id}'")
    page.locator("#browse-across img").nth(10).wait_for()
    page.wait_for_timeout(1000)
    shots["browse"] = page.screenshot()

    page.get_by_role("tab", name="Metrics").click()
    page.get_by_role("cell", name="Baseline: low-pass seen image").wait_for()
    page.wait_for_timeout(3000)  # the plots draw
    shots["metrics"] = page.screenshot(full_page=True)

    page.get_by_role("tab", name="About").click()
    page.get_by_text("How a picture is read back from the brain").wait_for()
    page.wait_for_timeout(1000)
    shots["about"] = page.screenshot()

    page.goto(f"{url}/?tab=roi")
    page.get_by_text("Using the demo's committed ROI workspace").wait_for()
    page.locator("#roi-canvas canvas").first.wait_for()
    page.wait_for_timeout(3000)
    page.locator("#roi-presets input[value='faces']").check()
    page.wait_for_function("() => document.querySelector('#roi-slider-faces input[type=number]').value === '1'")
    page.locator("#roi-generate").click()
    page.get_by_text(re.compile(r"roi-1-[0-9a-f]{16}")).first.wait_for()
    page.wait_for_function("() => !/processing \\|/.test(document.body.innerText)")
    page.evaluate("() => window.scrollTo(0, document.querySelector('#roi-presets').getBoundingClientRect().top"
                  " + window.scrollY - 8)")
    page.wait_for_timeout(1500)
    shots["roi"] = page.screenshot()

    page.goto(f"{url}/?tab=brain")
    page.get_by_role("button", name="Predict and decode").click()
    page.get_by_text(re.compile(r"median r = ")).wait_for()
    page.wait_for_function("() => !/processing \\|/.test(document.body.innerText)")
    page.wait_for_timeout(1500)
    shots["brain"] = page.screenshot()

    page.goto(f"{url}/?tab=classroom")
    page.get_by_role("button", name="Next question").click()
    page.locator("#classroom-choice-4 img").wait_for()
    page.get_by_role("button", name="2", exact=True).click()
    page.locator("#classroom .bd-right").wait_for()
    page.wait_for_timeout(800)
    shots["classroom"] = page.screenshot()
    page.close()

    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.set_default_timeout(120_000)
    page.goto(f"{url}/?tab=classroom")
    page.get_by_role("button", name="Next question").wait_for(state="visible")
    page.locator("body").click(position={"x": 5, "y": 5})
    for key in ("n", "n", "f"):  # question 2, projector mode
        page.keyboard.press(key)
        page.wait_for_timeout(700)
    page.locator("#classroom-choice-4 img").wait_for()
    page.keyboard.press("1")
    page.locator("#classroom .bd-right").wait_for()
    page.wait_for_timeout(800)
    shots["classroom_projector"] = page.screenshot()
    page.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-id", default="97", help="test image to show (default 97)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "img")
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
            shots = take_screenshots(browser, url, args.image_id)
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in shots.items():
        tmp = args.out_dir / f"{name}.tmp.png"
        tmp.write_bytes(png)
        tmp.replace(args.out_dir / f"{name}.png")
        print(f"wrote {args.out_dir / name}.png")


if __name__ == "__main__":
    main()

"""``python app.py``, the README's first command, as a process: it serves the app on 127.0.0.1 with the queue on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]



def test_app_py_serves_the_demo_on_localhost(tmp_path):
    port = free_port()
    env = {**os.environ, "BRAINDIFF_HOME": str(tmp_path)}
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # app.py itself must turn analytics off
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--threads", "1"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, config = time.monotonic() + 120, None
        while config is None and time.monotonic() < deadline:
            assert process.poll() is None, f"app.py exited: {process.stdout.read()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.load(response)
            except OSError:
                time.sleep(1)
        assert config is not None, "app.py did not serve within 120 s"
        assert config["title"] == "braindiff: Brain-Diffuser explorer"
        assert config["enable_queue"] is True and config["analytics_enabled"] is False
        endpoints = {dep.get("api_name") for dep in config["dependencies"]}
        assert {"show_trial", "select_subject", "roi_generate"} <= endpoints
    finally:
        process.terminate()
        process.wait(timeout=30)

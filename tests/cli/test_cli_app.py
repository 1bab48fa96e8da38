"""``python app.py`` is a thin launcher of ``braindiff app``: the same flags, every settings flag among them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from braindiff_app.cli import main

REPO = Path(__file__).resolve().parents[2]
SETTINGS_FLAGS = ("--home", "--tier", "--nsd-root", "--vdvae-checkpoint", "--vd-dir", "--eval-weights", "--device",
                  "--dtype", "--threads", "--debug")
APP_FLAGS = ("--host", "--port", "--share", "--auth", "--bundles")


def _flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text))


def test_app_py_and_braindiff_app_show_the_same_flags(monkeypatch, capsys):
    env = {**os.environ, "COLUMNS": "100"}
    launched = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60)
    assert launched.returncode == 0, launched.stderr
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exc:
        main(["app", "--help"])
    assert exc.value.code == 0
    direct = capsys.readouterr().out
    assert launched.stdout == direct  # app.py adds and drops nothing
    flags = _flags(direct)
    assert set(SETTINGS_FLAGS + APP_FLAGS) <= flags
    assert flags == set(SETTINGS_FLAGS + APP_FLAGS + ("--help",))

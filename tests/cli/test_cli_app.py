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


def test_help_and_readme_name_every_tab_of_the_app(monkeypatch, capsys):
    from braindiff_app.ui import TAB_IDS

    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["app", "--help"])
    described = " ".join(capsys.readouterr().out.split())
    missing = [label for label in TAB_IDS.values() if label not in described]
    assert not missing, f"`braindiff app --help` leaves out the tabs {missing}"
    words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"opens {words[len(TAB_IDS)]} tabs" in " ".join(readme.split())

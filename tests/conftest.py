"""Shared fixtures: a clean workspace per test and small synthetic bundles."""

from __future__ import annotations

import pytest

from tests.factories import make_bundle


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path, monkeypatch):
    """Every test gets its own BRAINDIFF_HOME and no stray bundle folders from the environment."""
    monkeypatch.setenv("BRAINDIFF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BRAINDIFF_BUNDLES", raising=False)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def bundle(tmp_path):
    """A complete 6-trial bundle with every image kind, under tmp_path/bundles."""
    return make_bundle(tmp_path / "bundles")

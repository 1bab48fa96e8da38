"""Shared fixtures: a clean workspace per test, small synthetic bundles, a live app on localhost."""

from __future__ import annotations

import socket

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_app(tmp_path, monkeypatch):
    """Start the app on a free localhost port over two synthetic bundles; yields (url, state)."""
    from braindiff_app.config import load_settings
    from braindiff_app.ui import build_app, launch_app
    from tests.factories import make_bundle

    root = tmp_path / "bundles"
    make_bundle(root, name="demo-subj01", subject="1", n_trials=5, size=32)
    make_bundle(root, name="demo-average", subject="average", n_trials=5, size=32)
    settings = load_settings(home=tmp_path / "home", extra_bundle_dirs=(root,))
    app, state, _ = build_app(settings)
    port = free_port()
    launch_app(app, settings, port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", state
    finally:
        app.close()

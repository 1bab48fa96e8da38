"""Shared fixtures: a clean workspace per test, small synthetic bundles, a live app on localhost."""

from __future__ import annotations

import socket

import pytest

from tests.factories import make_bundle
from tests.nsd_factory import make_nsd


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path, monkeypatch):
    """Every test gets its own BRAINDIFF_HOME and no stray bundle folders from the environment."""
    monkeypatch.setenv("BRAINDIFF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BRAINDIFF_BUNDLES", raising=False)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    # The repo's own precomputed/ bundles are not part of a test's world (tests that want them restore it).
    monkeypatch.setattr("braindiff_app.config.PRECOMPUTED_DIR", tmp_path / "precomputed")


@pytest.fixture(autouse=True)
def _no_roi_warm_up(request, monkeypatch):
    """Apps launched by tests do not load the ROI models in a background thread (it outlives the test and builds
    models while later tests build theirs); tests marked ``roi_warm`` keep it."""
    if request.node.get_closest_marker("roi_warm") is None:
        monkeypatch.setattr("braindiff_app.ui.roi_handlers.ROIHandlers.warm", lambda self: None)


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


@pytest.fixture
def tiny_nsd(tmp_path):
    """A tiny NSD folder (subject 1, 3 sessions of 10 trials) under tmp_path/nsd; see tests/nsd_factory.py."""
    return make_nsd(tmp_path / "nsd")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads; on a loaded 2-core machine two OpenMP threads ran 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(name="make_nsd")
def make_nsd_fixture():
    """The factory itself, to write a tiny NSD at a chosen root: ``make_nsd(root, **options)``."""
    return make_nsd


def pytest_collection_modifyitems(config, items):
    """Browser tests run last: they start Chromium and whole apps, and later tests failed after them."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)

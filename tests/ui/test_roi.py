"""ROI studio tab: what API clients (which never open the tab in a page) can call."""

from __future__ import annotations

from braindiff_app.config import load_settings
from braindiff_app.ui import build_app


def test_subject_choices_are_known_before_the_tab_is_opened():
    """gradio checks a Dropdown's value against the choices the app was built with; they were empty, so
    gradio_client calls to /roi_generate failed with "Value: 1 is not in the list of choices: []"."""
    _, _, components = build_app(load_settings(tier="demo"))  # empty home: the committed demo ROI workspace
    values = [value for _, value in components["roi.subject"].choices]
    assert values[0] == "1" and values[-1] == "average" and len(values) >= 3
    assert components["roi.subject"].value is None  # chosen when the tab opens (models loaded then)


def test_no_subject_choices_without_regressors(tmp_path):
    settings = load_settings(tier="real", home=tmp_path / "home")
    _, _, components = build_app(settings)
    assert components["roi.subject"].choices == []

"""ui/bounded.py: typed slider and number values are clamped to the range, never fail the event."""

from __future__ import annotations

import gradio as gr
import pytest

from braindiff_app.ui import bounded


def test_clamp_brings_values_into_range_and_warns():
    with pytest.warns(UserWarning, match=r"Test trial: 999 is outside 1\.\.100; 100 was used"):
        assert bounded.clamp("Test trial", 999, 1, 100) == 100
    with pytest.warns(UserWarning, match=r"V1: -3 is outside -1\.\.1; -1 was used"):
        assert bounded.clamp("V1", -3, -1, 1) == -1
    with pytest.warns(UserWarning, match=r"Seed: the box was empty; 0 was used"):
        assert bounded.clamp("Seed", None, 0, None) == 0
    with pytest.warns(UserWarning, match="Seed: nan is not a finite number; 0 was used"):
        assert bounded.clamp("Seed", float("nan"), 0, None) == 0
    with pytest.warns(UserWarning, match="Dial: inf is not a finite number; -1 was used"):
        assert bounded.clamp("Dial", float("inf"), -1, 1) == -1
    assert bounded.clamp("Seed", 10**9, 0, None) == 10**9  # no maximum: left alone


def test_clamp_is_silent_inside_the_range_and_keeps_ints_exact(recwarn):
    assert bounded.clamp("x", 0.5, -1, 1) == 0.5
    assert bounded.clamp("x", None, None, None) is None
    big = 2**63 - 1  # the largest seed: float() would round it to 2**63
    assert bounded.clamp("Seed", big, 0, None) == big and isinstance(bounded.clamp("Seed", big, 0, None), int)
    assert bounded.clamp("Seed", 12345678901234567, 0, big) == 12345678901234567
    assert not recwarn.list
    with pytest.warns(UserWarning):
        assert bounded.clamp("Seed", 2**70, 0, big) == big


def test_slider_and_number_preprocess_clamp_and_round():
    with gr.Blocks():
        trial = bounded.Slider(1, 100, value=1, step=1, precision=0, label="Test trial", elem_id="t")
        seed = bounded.Number(0, precision=0, minimum=0, label="Seed", elem_id="s")
    with pytest.warns(UserWarning):
        assert trial.preprocess(999) == 100
        assert isinstance(trial.preprocess(999), int)
        assert seed.preprocess(-3) == 0
    assert trial.preprocess(41.6) == 42
    # Gradio's own components fail the same values
    with pytest.raises(gr.Error):
        gr.Slider(1, 100, step=1).preprocess(999)


def test_the_copy_gradio_makes_for_an_update_clamps_to_the_new_maximum():
    # For gr.update(maximum=...) Gradio rebuilds the component, unrendered, from its constructor arguments.
    with gr.Blocks():
        trial = bounded.Slider(1, 100, value=1, step=1, label="Test trial", elem_id="t")
    copy = type(trial)(**{**trial.constructor_args, "maximum": 982, "render": False})
    with pytest.warns(UserWarning, match=r"1\.\.982; 982 was used"):
        assert copy.preprocess(5000) == 982
    assert copy.get_config()["label"] == "Test trial" and copy.get_config()["maximum"] == 982


def test_every_bounded_box_gets_its_browser_clamp():
    with gr.Blocks() as app:
        bounded.Slider(-1, 1, label="V1", elem_id="roi-slider-V1")
        bounded.Number(0, minimum=0, label="Seed", elem_id="seed")
        gr.Slider(0, 1, label="plain")
        bounded.keep_boxes_in_range(app)
    scripts = [fn.js for fn in app.fns.values() if fn.js]
    assert len(scripts) == 2
    assert any("#roi-slider-V1 input[type=number]" in js for js in scripts)
    with gr.Blocks() as app, pytest.raises(ValueError, match="needs an elem_id"):
        bounded.Slider(0, 1, label="nameless")
        bounded.keep_boxes_in_range(app)


def test_the_app_uses_bounded_boxes_everywhere():
    from braindiff_app.config import load_settings
    from braindiff_app.ui import build_app

    app, _, _ = build_app(load_settings(tier="demo"))  # empty home: the committed demo bundles and ROI workspace
    plain = [b.label for b in app.blocks.values()
             if isinstance(b, (gr.Slider, gr.Number)) and not isinstance(b, (bounded.Slider, bounded.Number))
             and b.visible]
    assert plain == []

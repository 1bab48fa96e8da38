"""The Browse tab: handlers directly, then the named endpoints through gradio_client on a live app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braindiff_app.bundles import IMAGE_KINDS
from braindiff_app.config import load_settings
from braindiff_app.ui.browse import BrowseHandlers
from braindiff_app.ui.state import AppState
from tests.factories import make_bundle, synthetic_image


@pytest.fixture
def handlers(tmp_path):
    make_bundle(tmp_path / "b", name="demo-subj01", n_trials=6, size=16)
    make_bundle(tmp_path / "b", name="real-subj02", subject="2", tier="real", n_trials=3, size=16)
    return BrowseHandlers(AppState(load_settings(extra_bundle_dirs=(tmp_path / "b",))))


def test_default_bundle_is_demo_subject_1(handlers):
    assert handlers.state.default_bundle == "demo-subj01"
    assert [name for _, name in handlers.subjects()] == ["demo-subj01", "real-subj02"]


def test_trial_view_paths_and_captions(handlers):
    view = handlers.trial("demo-subj01", 4)
    assert set(view.images) == set(IMAGE_KINDS)
    np.testing.assert_array_equal(np.asarray(Image.open(view.images["final"])), synthetic_image(4, 2, 16))
    assert "image id 1028" in view.header and "a photo of a word sign 4" in view.captions
    assert "protocol braindiff" in view.header  # the protocol the bundle was made with (none recorded: braindiff)
    assert view.metric_rows == []


def test_trial_view_metrics(handlers):
    from braindiff_app.bundles import write_metrics

    write_metrics(handlers.state.bundle("demo-subj01").path,
                  {"final": {"PixCorr": np.linspace(0, 0.5, 6)}, "vdvae": {"PixCorr": np.ones(6)}})
    handlers.state.refresh()
    view = handlers.trial("demo-subj01", 5)
    assert view.metric_names == ["PixCorr"]
    assert view.metric_rows == [["VDVAE guess", "1.000"], ["Final reconstruction", "0.500"]]


def test_jump_search_and_errors(handlers):
    assert handlers.jump("demo-subj01", 1021) == 3
    with pytest.raises(ValueError, match="Image id 5 is not among demo-subj01"):
        handlers.jump("demo-subj01", 5)
    assert handlers.search("demo-subj01", "person") == [3]
    with pytest.raises(ValueError, match="no bundle named 'nope'"):
        handlers.trial("nope", 0)
    with pytest.raises(ValueError, match="has trials 0..5, got 6"):
        handlers.trial("demo-subj01", 6)


def test_no_bundle_message(tmp_path):
    from braindiff_app.ui.browse import _status_message

    state = AppState(load_settings(home=tmp_path / "empty"))
    state.bundles = []
    assert _status_message(state).startswith("**No simulated subject (demo) bundle yet.** Run `braindiff demo build`")
    # The real tier with only demo bundles: say so, and that the demo ones are still listed.
    make_bundle(tmp_path / "empty" / "bundles", name="demo-subj01", n_trials=2, size=8)
    real = AppState(load_settings(home=tmp_path / "empty", tier="real"))
    assert [b.tier for b in real.bundles] == ["demo"]
    message = _status_message(real)
    assert message.startswith("**No NSD bundle yet.** Run `braindiff reconstruct`") and "other tier" in message
    make_bundle(tmp_path / "empty" / "bundles", name="real-subj01", tier="real", n_trials=2, size=8)
    real.refresh()
    assert _status_message(real) == ""


def _image_from(update) -> np.ndarray:
    path = update["value"] if isinstance(update, dict) else update
    return np.asarray(Image.open(Path(path)).convert("RGB"))


def test_show_trial_endpoint_live(live_app):
    from gradio_client import Client

    url, state = live_app
    client = Client(url, verbose=False)
    endpoints = client.view_api(return_format="dict")["named_endpoints"]
    assert {"/select_subject", "/show_trial", "/jump_to_trial", "/search_captions"} <= set(endpoints)
    result = client.predict("demo-subj01", 2, api_name="/show_trial")
    header, *pictures = result[:1 + len(IMAGE_KINDS)]
    assert "trial 3 of 5" in header
    for kind, picture in zip(IMAGE_KINDS, pictures, strict=True):
        np.testing.assert_array_equal(_image_from(picture), synthetic_image(2, IMAGE_KINDS.index(kind), 32))
    hidden = client.predict(False, api_name="/toggle_ablations")
    assert [p["visible"] for p in hidden] == [False, False, False]
    assert client.predict("demo-subj01", 1014, api_name="/jump_to_trial") == 2
    gallery, info = client.predict("demo-average", "face", api_name="/search_captions")
    assert len(gallery) == 1 and "1 trial matches 'face'" in info


def test_search_matches_whole_words_only(handlers):
    bundle = handlers.state.bundle("demo-subj01")
    captions = {t.index: " ".join(t.captions).lower() for t in bundle.trials}
    word = next(w for c in captions.values() for w in c.split() if len(w) > 3)
    hits = handlers.search("demo-subj01", word.upper())
    assert hits and all(word in captions[i].split() for i in hits)
    assert handlers.search("demo-subj01", word[:-1] + "zz") == []
    assert handlers.search("demo-subj01", "a photo of") == handlers.search("demo-subj01", "photo a")  # every word
    assert handlers.search("demo-subj01", "1021") == [3]  # an image id
    assert handlers.search("demo-subj01", "photos") == handlers.search("demo-subj01", "photo") == list(range(6))
    assert handlers.search("demo-subj01", "images number") == list(range(6))  # "image number 3"
    assert handlers.search("demo-subj01", "phot") == []  # plurals, not prefixes
    assert handlers.search("demo-subj01", "  ") == list(range(6))


def test_thumbnail_pages_reach_every_result(handlers, monkeypatch):
    monkeypatch.setattr("braindiff_app.ui.browse.GALLERY_PAGE", 4)
    indices = handlers.search("demo-subj01", "")
    pages = [handlers.thumbnails("demo-subj01", indices, p) for p in range(2)]
    assert [len(p) for p in pages] == [4, 2]
    assert pages[1][0][1].startswith("#5 ")


def test_user_errors_are_one_line_in_the_server_log(live_app, capfd):
    from gradio_client import Client

    url, _ = live_app
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="Image id 5 is not among demo-subj01"):
        client.predict("demo-subj01", "5", api_name="/jump_to_trial")
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err


def test_one_image_across_subjects_of_the_same_tier(handlers):
    items = handlers.across_subjects("demo-subj01", 1021)
    # real-subj02 is of the other tier
    assert [label for _, label in items] == ["Seen, image 1021", "Subject 1 · guess", "Subject 1 · final"]
    assert items[2][0].endswith("final/00003.png")
    assert handlers.index_of("demo-subj01", 1021) == 3 and handlers.index_of("demo-subj01", 5) is None
    view = handlers.trial("demo-subj01", 3)
    assert view.image_id == 1021 and view.alt["final"] == "Final reconstruction, subject 1, image 1021"


def test_rescan_refreshes_every_tab_s_bundle_picker_live(live_app, tmp_path):
    from gradio_client import Client

    url, state = live_app
    client = Client(url, verbose=False)
    make_bundle(tmp_path / "bundles", name="demo-subj05", subject="5", n_trials=3, size=32)  # made after the start
    make_bundle(state.settings.home / "bundles", name="demo-subj01", n_trials=2, size=32)  # "yours", a shared name
    (state.bundle("demo-average").path / "trials.json").write_bytes(b"\xff")  # and one damaged meanwhile
    # Inputs: Browse's subject, Metrics' bundles and ablation bundle, Classroom's subject (tab order).
    browse, status, chosen, ablation, classroom = client.predict(
        "demo-subj01", ["demo-subj01", "demo-average"], "demo-average", "demo-subj01", api_name="/rescan_bundles")
    ours = f"demo-subj01 ({tmp_path / 'bundles'})"  # the bundle that was chosen, now labelled by where it lives
    keys = ["demo-subj01 (yours)", ours, "demo-subj05"]
    for picker in (browse, chosen, ablation, classroom):
        assert sorted(c[1] for c in picker["choices"]) == sorted(keys)
    assert browse["value"] == classroom["value"] == ours  # the same bundle, under its new key
    assert chosen["value"] == [ours]  # the chosen ones still there
    assert ablation["value"] == state.default_bundle == "demo-subj01 (yours)"  # the gone one: the default
    assert "trials.json: not UTF-8" in status["value"] and status["visible"]
    header = client.predict("demo-subj05", 1, api_name="/show_trial")[0]  # the new bundle is served at once
    assert "trial 2 of 3" in header
    assert state.key_of("demo-subj01") == ours and state.key_of("gone") is None
    kept = client.predict("demo-subj05", ["demo-subj05"], "demo-subj05", "demo-subj05", api_name="/rescan_bundles")
    assert kept[0]["value"] == kept[3]["value"] == kept[4]["value"] == "demo-subj05" and kept[2]["value"] == [
        "demo-subj05"]


def test_a_true_features_bundle_is_labelled_never_the_default_and_not_a_subject_across(tmp_path):
    make_bundle(tmp_path / "a", name="demo-subj01-true-features", n_trials=6, size=16, settings={"features": "true"})
    make_bundle(tmp_path / "b", name="demo-subj01", n_trials=6, size=16)
    handlers = BrowseHandlers(AppState(load_settings(extra_bundle_dirs=(tmp_path / "a", tmp_path / "b"))))
    assert handlers.state.default_bundle == "demo-subj01"  # the first folder's subject 1, yet not the default
    labels = dict((key, label) for label, key in handlers.subjects())
    assert labels["demo-subj01-true-features"].startswith("Subject 1, true features (ceiling) · ")
    assert labels["demo-subj01"].startswith("Subject 1 · ")
    items = handlers.across_subjects("demo-subj01", 1021)
    assert [label for _, label in items] == ["Seen, image 1021", "Subject 1 · guess", "Subject 1 · final"]
    assert all("true-features" not in path for path, _ in items[1:])
    ceiling = handlers.trial("demo-subj01-true-features", 0).header
    assert "with no brain data" in ceiling and "Not stored in this bundle" not in ceiling  # every kind stored
    assert "with no brain data" not in handlers.trial("demo-subj01", 0).header


def test_the_default_is_a_decoded_bundle_even_without_subject_1_and_the_quiz_never_defaults_to_the_ceiling(tmp_path):
    from braindiff_app.ui.classroom import build_classroom_tab

    make_bundle(tmp_path / "b", name="demo-subj01-true-features", n_trials=6, size=16, settings={"features": "true"})
    make_bundle(tmp_path / "b", name="demo-subj02", subject="2", n_trials=6, size=16)
    state = AppState(load_settings(extra_bundle_dirs=(tmp_path / "b",)))
    assert state.bundles[0].name == "demo-subj01-true-features" and state.default_bundle == "demo-subj02"
    alone = tmp_path / "c"
    make_bundle(alone, name="demo-subj01-true-features", n_trials=6, size=16, settings={"features": "true"})
    state = AppState(load_settings(extra_bundle_dirs=(alone,)))
    assert state.default_bundle == "demo-subj01-true-features"  # the only bundle: Browse still opens it
    import gradio as gr

    with gr.Blocks():
        parts = build_classroom_tab(gr.Blocks(), state)
    assert parts["classroom.subject"].value is None and parts["classroom.subject"].choices == []


def test_the_header_names_the_image_kinds_a_bundle_does_not_store(tmp_path):
    make_bundle(tmp_path / "b", name="demo-subj01", n_trials=3, size=16,
                kinds=("ground_truth", "vdvae", "final", "no_vdvae"))
    handlers = BrowseHandlers(AppState(load_settings(extra_bundle_dirs=(tmp_path / "b",))))
    view = handlers.trial("demo-subj01", 1)
    assert view.images["no_text"] is None and view.images["no_vdvae"] is not None
    assert "Not stored in this bundle: No CLIP-text, No CLIP-vision." in view.header

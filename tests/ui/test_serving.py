"""What the app serves: only PNG images inside the bundles found; trial views name broken images; captions are
text; a damaged metrics file is named (issue 16)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest

from braindiff_app.config import load_settings
from braindiff_app.ui.browse import BrowseHandlers
from braindiff_app.ui.state import AppState, served_paths
from tests.factories import make_bundle


def _status(url: str, path: str) -> int:
    try:
        with urllib.request.urlopen(url + "gradio_api/file=" + urllib.parse.quote(path, safe="/"), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_file_route_serves_bundle_images_only(live_app, tmp_path):
    url, state = live_app
    bundle = state.bundle("demo-subj01")
    image = bundle.path / "images" / "final" / "00000.png"
    assert _status(url, str(image)) == 200
    for path in [bundle.path / "manifest.json", bundle.path / "trials.json", "/etc/passwd",
                 f"{bundle.path}/images/../manifest.json", f"{bundle.path}/images/final/../../../../etc/passwd"]:
        assert _status(url, str(path)) in (403, 404), path
    (bundle.path / "images" / "final" / "notes.txt").write_text("secret")
    secret = tmp_path / "secret.png"
    secret.write_bytes(image.read_bytes())
    (bundle.path / "images" / "final" / "00003.png").unlink()
    (bundle.path / "images" / "final" / "00003.png").symlink_to(secret)
    make_bundle(tmp_path / "bundles", name="demo-subj02", subject="2", n_trials=2, size=8)
    state.refresh()  # "Rescan bundles": the new bundle's images become servable, new non-PNG files are blocked
    assert _status(url, str(tmp_path / "bundles" / "demo-subj02" / "images" / "vdvae" / "00001.png")) == 200
    assert _status(url, str(bundle.path / "images" / "final" / "notes.txt")) == 403
    assert _status(url, str(bundle.path / "images" / "final" / "00003.png")) == 403  # resolves outside
    view = BrowseHandlers(state).trial("demo-subj01", 3)
    assert view.images["final"] is None and "00003.png: links outside bundle demo-subj01" in view.header


def test_served_paths_follow_a_linked_bundle_folder(tmp_path):
    real = make_bundle(tmp_path / "store", name="demo-subj01", n_trials=2, size=8)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "demo-subj01").symlink_to(real.path, target_is_directory=True)
    (real.path / "images" / "final" / "x.json").write_text("{}")
    state = AppState(load_settings(extra_bundle_dirs=(tmp_path / "b",)))
    allowed, blocked = served_paths(state)
    assert allowed == [str(real.path.resolve() / "images")]
    assert blocked == [str(real.path.resolve() / "images" / "final" / "x.json")]


@pytest.fixture
def handlers(tmp_path):
    make_bundle(tmp_path / "b", name="demo-subj01", n_trials=3, size=8)
    return BrowseHandlers(AppState(load_settings(extra_bundle_dirs=(tmp_path / "b",))))


def test_trial_view_names_missing_and_unreadable_images(handlers):
    bundle = handlers.state.bundle("demo-subj01")
    (bundle.path / "images" / "final" / "00001.png").unlink()
    (bundle.path / "images" / "vdvae" / "00001.png").write_bytes(b"not a png")
    view = handlers.trial("demo-subj01", 1)
    assert view.images["final"] is None and view.images["vdvae"] is None and view.images["ground_truth"]
    assert "final/00001.png: image missing" in view.header.replace("\\_", "_")
    assert "vdvae/00001.png: unreadable image" in view.header


def test_captions_are_shown_as_text(tmp_path):
    import json

    bundle = make_bundle(tmp_path / "b", name="demo-subj01", n_trials=2, size=8)
    trials = json.loads((bundle.path / "trials.json").read_text())
    trials[0]["captions"] = ['<img src=x onerror="alert(1)"> a *bold* cat']
    (bundle.path / "trials.json").write_text(json.dumps(trials))
    view = BrowseHandlers(AppState(load_settings(extra_bundle_dirs=(tmp_path / "b",)))).trial("demo-subj01", 0)
    assert "<img" not in view.captions and "&lt;img src=x" in view.captions and r"\*bold\*" in view.captions


def test_damaged_metrics_file_is_named(handlers):
    from braindiff_app.ui.metrics import MetricsHandlers

    bundle = handlers.state.bundle("demo-subj01")
    (bundle.path / "metrics.json").write_text("[1, 2]")
    handlers.state.refresh()
    with pytest.raises(ValueError, match=r"metrics.json: expected an object"):
        handlers.trial("demo-subj01", 0)
    with pytest.raises(ValueError, match=r"metrics.json: expected an object"):
        MetricsHandlers(handlers.state).view(["demo-subj01"], "demo-subj01")


def test_galleries_and_quiz_leave_out_or_name_a_broken_image(tmp_path):
    """A missing or damaged image in one trial: the thumbnail and across-subjects galleries leave it out, the
    quiz names it, and every other image still shows."""
    from braindiff_app.ui.classroom import QuizHandlers

    make_bundle(tmp_path / "b", name="demo-subj01", n_trials=5, size=8)
    handlers = BrowseHandlers(AppState(load_settings(extra_bundle_dirs=(tmp_path / "b",))))
    bundle = handlers.state.bundle("demo-subj01")
    (bundle.path / "images" / "ground_truth" / "00001.png").unlink()
    (bundle.path / "images" / "final" / "00002.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    thumbs = handlers.thumbnails("demo-subj01", [0, 1, 2])
    assert [label.split(" ")[0] for _, label in thumbs] == ["#1", "#3"]
    across = handlers.across_subjects("demo-subj01", bundle.trials[2].trial_id)
    assert across and all("00002.png" not in path or "/final/" not in path for path, _ in across)
    quiz = QuizHandlers(handlers.state)
    problems = []
    for round_index in range(20):
        try:
            quiz.question("demo-subj01", round_index)
        except ValueError as exc:
            problems.append(str(exc))
    assert problems and len(problems) < 20 and all("00001.png" in p or "00002.png" in p for p in problems)


def test_gradio_cache_is_cleaned_hourly(tmp_path):
    """Uploads and the images sent to browsers pile up in gradio's cache: files older than an hour go, checked as
    often (issue 16, item 7)."""
    from braindiff_app.ui import CACHE_LIFETIME, build_app

    app, _, _ = build_app(load_settings(home=tmp_path / "home", extra_bundle_dirs=()))
    assert app.delete_cache == (CACHE_LIFETIME, CACHE_LIFETIME) and 60 <= CACHE_LIFETIME <= 24 * 3600

"""Issue 16, files: no bundle folder stops the scan, one writer per bundle, recoverable publish, images stay inside
their bundle, unique bundle keys, field-by-field messages (fuzz cases and property-based tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braindiff_app import bundles as bundles_module
from braindiff_app.bundles import (
    BundleError,
    BundleLockedError,
    BundleWriter,
    Manifest,
    find_bundles,
    open_bundle,
)
from tests.factories import make_bundle, synthetic_image


def _rewrite(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set_trial(field, value):
    def edit(records):
        records[1][field] = value
    return "trials.json", edit


def _set_manifest(field, value):
    def edit(manifest):
        manifest[field] = value
    return "manifest.json", edit


def _raw(name, data: bytes):
    return name, data


NESTED = ("[" * 100_000 + "]" * 100_000).encode()

# Each breaks one bundle only: the scan skips it, names its file, and still serves the good bundle.
BAD_BUNDLES = {
    "caption not UTF-8": _raw("trials.json", b'[{"trial_id": 1, "captions": ["caf\xe9"]}]'),
    "manifest not UTF-8": _raw("manifest.json", b'{"format": "braindiff-bundle", "name": "\xff\xfe"}'),
    "trials in Latin-1": _raw("trials.json", '[{"trial_id": 1, "captions": ["déjà vu"]}]'.encode("latin-1")),
    "trial_id a path": _set_trial("trial_id", "../../etc/passwd"),
    "trial_id 1e400": _raw("trials.json", b'[{"trial_id": 1}, {"trial_id": 1e400}]'),
    "captions a number": _set_trial("captions", 5),
    "n_trials text": _set_manifest("n_trials", "abc"),
    "n_trials null": _set_manifest("n_trials", None),
    "manifest nested deeply": _raw("manifest.json", NESTED),
    "trials nested deeply": _raw("trials.json", NESTED),
    "caption lone surrogate": _raw("trials.json", b'[{"trial_id": 1}, {"trial_id": 2, "captions": ["a \\ud800"]}]'),
    "kinds a string": _set_manifest("kinds", "final"),
    "settings a list": _set_manifest("settings", [1, 2]),
    "name a path": _set_manifest("name", "../demo-subj01"),
    "name of another bundle": _set_manifest("name", "good"),
}


@pytest.mark.parametrize("case", sorted(BAD_BUNDLES))
def test_a_bad_bundle_is_skipped_and_named(tmp_path, case):
    make_bundle(tmp_path, name="good", n_trials=2, size=8)
    bad = make_bundle(tmp_path, name="bad", n_trials=2, size=8)
    name, edit = BAD_BUNDLES[case]
    if isinstance(edit, bytes):
        (bad.path / name).write_bytes(edit)
    else:
        _rewrite(bad.path / name, edit)
    with pytest.raises(BundleError, match=str(bad.path / name).replace("\\", "\\\\")):
        open_bundle(bad.path)
    found, problems = find_bundles([tmp_path])
    assert [b.name for b in found] == ["good"]
    assert len(problems) == 1 and str(bad.path / name) in problems[0]


def test_a_subject_that_is_a_digit_but_not_a_number(tmp_path):
    make_bundle(tmp_path, name="good", n_trials=2, size=8)
    odd = make_bundle(tmp_path, name="odd", subject="1", n_trials=2, size=8)
    _rewrite(odd.path / "manifest.json", lambda m: m.update(subject="²"))
    found, problems = find_bundles([tmp_path])
    assert sorted(b.name for b in found) == ["good", "odd"] and problems == []


def test_app_starts_over_a_bad_bundle_in_home_and_shows_why(tmp_path):
    from braindiff_app.config import load_settings
    from braindiff_app.ui.browse import _status_message
    from braindiff_app.ui.state import AppState

    settings = load_settings(home=tmp_path / "home")
    make_bundle(settings.home / "bundles", name="demo-subj01", n_trials=2, size=8)
    bad = make_bundle(settings.home / "bundles", name="demo-subj02", subject="2", n_trials=2, size=8)
    (bad.path / "trials.json").write_bytes(b"\xff\xfe")
    state = AppState(settings)
    assert [b.key for b in state.bundles] == ["demo-subj01"]
    assert "trials.json: not UTF-8" in _status_message(state)


def test_metrics_of_the_wrong_shape_are_named(bundle):
    path = bundle.path / "metrics.json"
    for raw, message in [("[1, 2]", "expected an object"),
                         ('{"final": {"PixCorr": [1, 2]}}', r"final/PixCorr: expected a list of 6 values"),
                         ('{"final": {"PixCorr": [1, 2, "x", 4, 5, 6]}}', r"final/PixCorr\[2\]: expected a number"),
                         ('{"final": [1]}', "final: expected an object"),
                         ('{"bogus": {}}', "'bogus': not an image kind"),
                         ("[" * 50_000, "nested too deeply|not valid JSON")]:
        path.write_text(raw)
        with pytest.raises(BundleError, match=f"metrics.json: .*({message})"):
            _ = open_bundle(bundle.path).metrics


# -- property-based: any manifest or trials file gives a Bundle or a BundleError naming the file ------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)


def _manifest_like():
    field = st.one_of(JSON, st.just(None))
    return st.fixed_dictionaries({"format": st.just("braindiff-bundle"), "version": st.just(1)}, optional={
        "name": st.one_of(st.just("b"), field), "subject": field, "tier": field, "n_trials": st.one_of(
            st.just(2), field), "kinds": st.one_of(st.just(["ground_truth", "vdvae", "final"]), field),
        "settings": field, "models": field, "image_size": field})


def _open_or_bundle_error(path, name):
    try:
        return open_bundle(path)
    except BundleError as exc:
        assert str(path / name) in str(exc)
        return None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest=st.one_of(_manifest_like(), JSON), raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_any_manifest_opens_or_is_named(tmp_path_factory, manifest, raw):
    root = tmp_path_factory.mktemp("m")
    bundle = make_bundle(root, name="b", n_trials=2, size=8, kinds=("ground_truth", "vdvae", "final"))
    path = bundle.path / "manifest.json"
    path.write_bytes(raw if raw is not None else json.dumps(manifest).encode())
    opened = _open_or_bundle_error(bundle.path, "manifest.json")
    assert opened is None or opened.name == "b"
    found, problems = find_bundles([root])
    assert len(found) == (opened is not None) and len(problems) == (opened is None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.one_of(JSON, st.fixed_dictionaries({"trial_id": JSON}, optional={"captions": JSON}),
                                  st.fixed_dictionaries({"trial_id": st.integers()}, optional={
                                      "captions": st.lists(st.text(max_size=5), max_size=3)})), max_size=3),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_any_trials_file_opens_or_is_named(tmp_path_factory, records, raw):
    root = tmp_path_factory.mktemp("t")
    bundle = make_bundle(root, name="b", n_trials=2, size=8, kinds=("ground_truth", "vdvae", "final"))
    path = bundle.path / "trials.json"
    path.write_bytes(raw if raw is not None else json.dumps(records).encode())
    opened = _open_or_bundle_error(bundle.path, "trials.json")
    if opened is not None:
        assert all(isinstance(t.trial_id, int) and all(isinstance(c, str) for c in t.captions)
                   for t in opened.trials)
    find_bundles([root])  # never raises


# -- one writer per bundle; records made under other settings never count ----------------------------------------
def _manifest(seed=0, n=3):
    return Manifest(name="run", subject="2", tier="demo", n_trials=n, image_size=8, settings={"seed": seed})


def _images(i):
    return {k: synthetic_image(i, j, 8) for j, k in enumerate(("ground_truth", "vdvae", "final"))}


def test_a_second_writer_process_is_refused_naming_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from braindiff_app.bundles import BundleWriter, Manifest
        w = BundleWriter({str(tmp_path)!r}, Manifest(name="run", subject="2", tier="demo", n_trials=3,
                         image_size=8, settings={{"seed": 0}}))
        print("locked", flush=True)
        sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BundleLockedError, match=r"run: another run is writing this bundle .*\.run\.lock"):
            BundleWriter(tmp_path, _manifest(), overwrite=True)
    finally:
        holder.communicate("\n", timeout=60)
    writer = BundleWriter(tmp_path, _manifest())  # released when that process ended
    assert writer.pending() == [0, 1, 2]


def test_records_made_under_other_settings_are_recomputed(tmp_path):
    first = BundleWriter(tmp_path, _manifest(seed=0))
    for i in (0, 1):
        first.write_trial(i, trial_id=i, captions=["seed 0"], images=_images(i))
    first.close()
    # Two runs at once left records and no manifest; a later run with seed 5 counts none of seed 0's trials.
    (tmp_path / "run.partial" / "manifest.json").unlink()
    second = BundleWriter(tmp_path, _manifest(seed=5), overwrite=True)
    assert second.pending() == [0, 1, 2]
    for i in second.pending():
        second.write_trial(i, trial_id=10 + i, captions=["seed 5"], images=_images(i))
    bundle = second.finalize()
    assert bundle.manifest.settings["seed"] == 5 and [t.captions for t in bundle.trials] == [("seed 5",)] * 3
    assert "settings" not in json.loads((bundle.path / "trials.json").read_text())[0]


# -- a publish killed between its renames is completed or rolled back; .old and .partial are never listed ---------
def _kill_publish_at_second_rename(monkeypatch):
    real, calls = os.replace, []

    def replace(src, dst):
        if str(src).endswith(("run", "run.partial")):
            calls.append(src)
            if len(calls) == 2:
                raise KeyboardInterrupt("killed")
        return real(src, dst)

    monkeypatch.setattr(bundles_module.os, "replace", replace)


def _kill_removing_old(monkeypatch):
    real = bundles_module.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if str(path).endswith(".old") and not kwargs.get("ignore_errors"):
            raise KeyboardInterrupt("killed")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(bundles_module.shutil, "rmtree", rmtree)


def _overwrite(tmp_path, seed):
    writer = BundleWriter(tmp_path, _manifest(seed=seed), overwrite=True)
    for i in writer.pending():
        writer.write_trial(i, trial_id=100 * seed + i, captions=[], images=_images(i))
    return writer


@pytest.mark.parametrize("kill, expected", [("between renames", 2), ("between renames, partial damaged", 1),
                                            ("removing the previous bundle", 2)])
def test_publish_killed_midway_recovers_at_next_scan(tmp_path, monkeypatch, kill, expected):
    _overwrite(tmp_path, seed=1).finalize()
    writer = _overwrite(tmp_path, seed=2)
    (_kill_removing_old if kill.startswith("removing") else _kill_publish_at_second_rename)(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        writer.finalize()
    writer.close()
    monkeypatch.undo()
    assert (tmp_path / "run.old").is_dir()
    if kill.endswith("damaged"):
        (tmp_path / "run.partial" / "trials.json").unlink()
    found, problems = find_bundles([tmp_path])
    assert [b.path.name for b in found] == ["run"] and not (tmp_path / "run.old").exists()
    assert found[0].manifest.settings["seed"] == expected
    assert any(p.startswith((str(tmp_path / "run") + ":", str(tmp_path / "run.old") + ":")) for p in problems)
    if kill.endswith("damaged"):  # the interrupted run's partial folder stays, to resume; start over instead
        shutil.rmtree(tmp_path / "run.partial")
    _overwrite(tmp_path, seed=3).finalize()  # a later --overwrite works (no "Directory not empty")
    assert open_bundle(tmp_path / "run").manifest.settings["seed"] == 3


def test_writer_recovers_a_killed_publish_itself(tmp_path, monkeypatch):
    _overwrite(tmp_path, seed=1).finalize()
    writer = _overwrite(tmp_path, seed=2)
    _kill_publish_at_second_rename(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        writer.finalize()
    writer.close()
    monkeypatch.undo()
    assert open_bundle(_overwrite(tmp_path, seed=3).finalize().path).manifest.settings["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["run"]


def test_old_and_partial_folders_are_never_listed(tmp_path):
    make_bundle(tmp_path, name="run", n_trials=2, size=8)
    BundleWriter(tmp_path, _manifest(), overwrite=True).close()  # run.partial
    os.replace(tmp_path / "run", tmp_path / "x.old")  # an .old folder of no known publish
    (tmp_path / "x").mkdir()
    found, _ = find_bundles([tmp_path])
    assert found == []


# -- images stay inside their bundle ----------------------------------------------------------------------------
def test_image_linked_outside_the_bundle_is_refused(tmp_path):
    bundle = make_bundle(tmp_path / "b", name="s", n_trials=2, size=8)
    secret = tmp_path / "secret.png"
    secret.write_bytes((bundle.path / "images" / "final" / "00000.png").read_bytes())
    image = bundle.path / "images" / "final" / "00001.png"
    image.unlink()
    image.symlink_to(secret)
    with pytest.raises(BundleError, match="00001.png: links outside bundle s"):
        bundle.image_path(1, "final")
    assert "links outside bundle s" in bundle.image_problem(1, "final")
    with pytest.raises(BundleError, match="links outside"):
        bundles_module.validate_bundle(bundle.path)
    assert bundle.image_problem(0, "final") is None


def test_bundle_folder_that_is_a_link_keeps_working(tmp_path):
    real = make_bundle(tmp_path / "store", name="s", n_trials=2, size=8)
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "s").symlink_to(real.path, target_is_directory=True)
    (found,), problems = find_bundles([tmp_path / "served"])
    assert problems == [] and found.image_problem(1, "final") is None
    assert found.image(1, "final").shape == (8, 8, 3)


def test_missing_and_corrupt_images_are_reported(bundle):
    (bundle.path / "images" / "final" / "00002.png").unlink()
    (bundle.path / "images" / "vdvae" / "00002.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert "00002.png: image missing" in bundle.image_problem(2, "final")
    assert "00002.png: unreadable image" in bundle.image_problem(2, "vdvae")


def _bomb_png() -> bytes:
    """A small PNG whose header declares 12000 x 12000 pixels (bilevel, so it compresses to a few kB)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("damage", ["bomb", "truncated", "zero bytes"])
def test_evaluate_names_a_damaged_image(tmp_path, capsys, damage):
    """`braindiff evaluate` on a bundle with a decompression bomb, a truncated or an empty PNG: one line naming the
    file (the bomb refused from its header, before decoding), exit code 1, no traceback."""
    from braindiff_app.cli import main

    bundle = make_bundle(tmp_path / "b", name="damaged", n_trials=3, size=8)
    target = bundle.path / "images" / "final" / "00001.png"
    good = target.read_bytes()
    target.write_bytes({"bomb": _bomb_png, "truncated": lambda: good[: len(good) // 2],
                        "zero bytes": lambda: b""}[damage]())
    with pytest.raises(BundleError, match="00001.png"):
        open_bundle(bundle.path).image(1, "final")
    code = main(["evaluate", str(bundle.path), "--metrics", "PixCorr", "--home", str(tmp_path / "home")])
    err = capsys.readouterr().err
    assert code == 1 and "00001.png" in err and "Traceback" not in err
    assert ("pixels" in err) == (damage == "bomb")


# -- unique keys ---------------------------------------------------------------------------------------------------
def test_evaluate_names_the_folder_a_shared_bare_name_means(tmp_path, capsys, monkeypatch):
    from braindiff_app import config
    from braindiff_app.cli import main

    home = tmp_path / "home"
    shipped = make_bundle(config.PRECOMPUTED_DIR, name="demo-subj01", n_trials=2, size=8)
    yours = make_bundle(home / "bundles", name="demo-subj01", n_trials=3, size=8)
    assert main(["evaluate", "demo-subj01", "--metrics", "PixCorr", "--home", str(home), "--out",
                 str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert f"note: demo-subj01 is in 2 folders ({config.PRECOMPUTED_DIR}, {home / 'bundles'}); evaluating " \
           f"{shipped.path}: pass a bundle's path to choose another." in out
    assert "PixCorr" in open_bundle(shipped.path).metrics["final"] and not open_bundle(yours.path).metrics


def test_bundles_of_one_name_in_two_folders_are_both_reachable(tmp_path):
    shipped = make_bundle(tmp_path / "shipped", name="demo-subj01", n_trials=2, size=8)
    yours = make_bundle(tmp_path / "yours", name="demo-subj01", n_trials=3, size=8)
    found, _ = find_bundles([tmp_path / "shipped", tmp_path / "yours"],
                            labels={tmp_path / "shipped": "shipped", tmp_path / "yours": "yours"})
    keys = {b.key: b.path for b in found}
    assert keys == {"demo-subj01 (shipped)": shipped.path, "demo-subj01 (yours)": yours.path}


def test_a_label_taken_by_another_bundle_name_falls_back_to_the_path(tmp_path):
    make_bundle(tmp_path / "a", name="x", n_trials=2, size=8)
    make_bundle(tmp_path / "b", name="x", n_trials=2, size=8)
    make_bundle(tmp_path / "b", name="x (shipped)", n_trials=2, size=8)  # a crafted name equal to a label
    found, _ = find_bundles([tmp_path / "a", tmp_path / "b", tmp_path / "a"],  # a folder given twice
                            labels={tmp_path / "a": "shipped", tmp_path / "b": "yours"})
    keys = sorted(b.key for b in found)
    assert keys == sorted([str(tmp_path / "a" / "x"), "x (yours)", str(tmp_path / "b" / "x (shipped)")])


def test_app_state_reaches_each_bundle_and_labels_where_it_lives(tmp_path, monkeypatch):
    from braindiff_app import config
    from braindiff_app.config import load_settings
    from braindiff_app.ui.browse import BrowseHandlers
    from braindiff_app.ui.state import AppState

    settings = load_settings(home=tmp_path / "home")
    make_bundle(config.PRECOMPUTED_DIR, name="demo-subj01", n_trials=2, size=8)
    make_bundle(settings.home / "bundles", name="demo-subj01", n_trials=3, size=8)
    state = AppState(settings)
    choices = BrowseHandlers(state).subjects()
    assert len({key for _, key in choices}) == 2
    labels = {key: label for label, key in choices}
    assert labels["demo-subj01 (shipped)"].endswith("(shipped)") and labels["demo-subj01 (yours)"].endswith("(yours)")
    assert state.bundle("demo-subj01 (shipped)").n_trials == 2 and state.bundle("demo-subj01 (yours)").n_trials == 3
    # A bare name (an old link, an API call) is the first folder's: the shipped one, whatever the scan order
    assert state.bundle("demo-subj01").path == config.PRECOMPUTED_DIR / "demo-subj01"
    with pytest.raises(ValueError, match=r"no bundle named 'demo-subj02' \(found: .*demo-subj01 \(shipped\)"):
        state.bundle("demo-subj02")
    assert "(shipped)" in BrowseHandlers(state).trial("demo-subj01 (shipped)", 0).header


# -- metrics.json: concurrent evaluate runs never lose each other's rows -------------------------------------------
WRITER = """
import sys
from braindiff_app.bundles import write_metrics
path, tag, n, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
print("ready", flush=True)
sys.stdin.readline()
for r in range(rounds):
    write_metrics(path, {"final": {f"{tag}{r}": [float(r)] * n}})
"""


def test_concurrent_metrics_writers_keep_every_row(tmp_path):
    bundle = make_bundle(tmp_path, name="b", n_trials=2, size=8)
    rounds = 40
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(bundle.path), tag, "2", str(rounds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
             for tag in ("a", "b")]
    for p in procs:  # both started (imports done) before either writes
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    for p in procs:
        assert p.wait(timeout=120) == 0
    table = open_bundle(bundle.path).metrics["final"]
    assert sorted(table) == sorted(f"{t}{r}" for t in "ab" for r in range(rounds))
    assert table["b7"].tolist() == [7.0, 7.0]


def test_concurrent_metrics_writer_threads_keep_every_row(tmp_path, monkeypatch):
    import threading

    bundle = make_bundle(tmp_path, name="b", n_trials=2, size=8)
    real_read = bundles_module.read_json
    # Widen the read-modify-write window (a slow disk): without the lock the threads overwrite each other.
    monkeypatch.setattr(bundles_module, "read_json", lambda path: (time.sleep(0.01), real_read(path))[1])

    def write(tag):
        for r in range(10):
            bundles_module.write_metrics(bundle.path, {"final": {f"{tag}{r}": [1.0, None]}})

    threads = [threading.Thread(target=write, args=(tag,)) for tag in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    table = open_bundle(bundle.path).metrics["final"]
    assert len(table) == 40 and np.isnan(table["c3"][1])


def test_metrics_are_merged_only_into_a_sound_metrics_file(bundle):
    (bundle.path / "metrics.json").write_text('{"final": {"PixCorr": [1, 2]}}')
    with pytest.raises(BundleError, match=r"metrics.json: final/PixCorr: expected a list of 6 values"):
        bundles_module.write_metrics(bundle.path, {"final": {"SSIM": [0.5] * 6}})
    assert (bundle.path / "metrics.json").read_text() == '{"final": {"PixCorr": [1, 2]}}'

"""Issue 16: the CLI refuses early and in one line: no room to fit, an unwritable bundle folder, open serving."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

from braindiff_app.cli import main
from braindiff_app.ui import parse_auth


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("ann:s3cret:x", ("ann", "s3cret:x"))])
def test_parse_auth(value, expected):
    assert parse_auth(value) == expected


@pytest.mark.parametrize("value", ["ann", ":pw", "ann:"])
def test_parse_auth_names_the_form(value):
    with pytest.raises(ValueError, match="auth: expected 'user:password'"):
        parse_auth(value)


@pytest.mark.parametrize("argv, env, warned", [
    (["--host", "0.0.0.0"], {}, "host 0.0.0.0 (reachable from other machines)"),
    (["--share"], {}, "a public gradio.live link"),
    (["--host", "0.0.0.0", "--auth", "ann:pw"], {}, None),
    (["--host", "0.0.0.0"], {"BRAINDIFF_AUTH": "ann:pw"}, None),
    ([], {}, None),
])
def test_app_warns_on_open_serving_and_passes_auth(monkeypatch, capsys, argv, env, warned):
    import gradio as gr

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw))
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    assert main(["app", *argv]) == 0
    err = capsys.readouterr().err
    if warned:
        assert f"warning: serving on {warned} without authentication" in err and "--auth user:password" in err
    else:
        assert "without authentication" not in err
    assert launched["auth"] == (("ann", "pw") if "auth" in " ".join(argv) or env else None)
    assert launched["max_file_size"] == "20mb"


def test_app_bad_auth_is_one_line(capsys):
    assert main(["app", "--auth", "nopassword"]) == 1
    assert "braindiff app: error: auth: expected 'user:password'" in capsys.readouterr().err


def test_fit_checks_free_space_before_the_scratch_file(tmp_path, monkeypatch):
    from braindiff_app.regression import subject

    prepared, features, out = tmp_path / "prepared", tmp_path / "features", tmp_path / "out"
    prepared.mkdir()
    features.mkdir()
    np.save(prepared / "fmri_train.npy", np.zeros((6, 10), np.float32))
    (prepared / "meta.json").write_text("{}")  # prepare's completion mark
    np.save(features / "vdvae_train.npy", np.zeros((6, 1000), np.float32))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(subject.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 5000, 5000))
    with pytest.raises(OSError, match=r"out: fitting vdvae needs 0.00 GiB free .* only 0.00 GiB is free; free some "
                       "space or choose another --home"):
        subject.fit_subject(prepared, features, out, targets=("vdvae",))
    assert not (out / ".vdvae.weights.npy").exists()


def test_reconstruct_into_a_read_only_folder_fails_before_model_work(tmp_path, monkeypatch):
    import braindiff_app.reconstruct as rec
    from braindiff_app.config import load_settings

    loaded = []
    monkeypatch.setattr(rec, "load_pipeline", lambda *a, **k: loaded.append(1))
    blocked = tmp_path / "ro"
    blocked.write_text("a file where the home folder should be")  # unwritable even as root (like a read-only home)
    with pytest.raises(OSError, match=r"ro/bundles: cannot write the bundle there .*choose a writable --out"):
        rec.reconstruct_subject(load_settings(home=blocked, tier="demo"), 1)
    assert not loaded

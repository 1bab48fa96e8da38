"""`braindiff demo build`: the plan of ordinary commands, and a clear stop when a step fails."""

from __future__ import annotations

import argparse

import pytest

from braindiff_app.cli import demo_build
from braindiff_app.config import load_settings


def _args(**kw):
    base = dict(retrain=False, out=None, n_test=100, n_train=1500, limit=None, roi_rank=32, batch_size=50)
    return argparse.Namespace(**(base | kw))


def test_plan_orders_every_stage(tmp_path):
    plan = demo_build.steps(_args(), load_settings(home=tmp_path))
    commands = [argv[0] if argv[0] != "demo" else f"demo {argv[1]}" for _, argv in plan]
    assert commands[0] == "demo simulate" and commands[-1] == "demo export-roi"
    assert commands.count("prepare") == 4 and commands.count("fit") == 4 and commands.count("reconstruct") == 5
    assert "demo train-vdvae" not in commands
    assert commands.index("fit") < commands.index("reconstruct") < commands.index("evaluate")
    reconstruct = [argv for _, argv in plan if argv[0] == "reconstruct"]
    assert reconstruct[-1][:3] == ["reconstruct", "--subject", "average"] and "all" in reconstruct[0]
    assert all(argv[argv.index("--batch-size") + 1] == "50" and "--overwrite" in argv for argv in reconstruct)
    retrain = demo_build.steps(_args(retrain=True, limit=5), load_settings(home=tmp_path))
    assert [argv[1] for _, argv in retrain[1:3]] == ["train-vdvae", "train-diffusion"]
    assert all("--limit" in argv for _, argv in retrain if argv[0] == "reconstruct")


def test_stops_at_failing_step_with_message(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_main(argv):
        calls.append(argv)
        return 1 if argv[0] == "prepare" else 0

    monkeypatch.setattr("braindiff_app.cli.main", fake_main)
    args = _args(home=str(tmp_path), tier=None, nsd_root=None, vdvae_checkpoint=None, vd_dir=None,
                 eval_weights=None, device=None, dtype=None)
    assert demo_build.run(args) == 1
    assert [a[0] for a in calls] == ["demo", "prepare"]
    assert "rerun `braindiff demo build` to continue" in capsys.readouterr().err


def test_roi_settings_falls_back_to_committed_workspace(tmp_path):
    from braindiff_app.config import DEMO_ROI_HOME as DEMO_HOME
    from braindiff_app.roi import roi_settings

    settings = load_settings(home=tmp_path)
    chosen, committed = roi_settings(settings)
    assert committed and chosen.home == DEMO_HOME
    folder = settings.subject_dir("regressors", 1)
    folder.mkdir(parents=True)
    for name in ("vdvae", "clip_vision", "clip_text"):
        (folder / f"{name}.safetensors").write_bytes(b"")
    assert roi_settings(settings) == (settings, False)
    real = load_settings(home=tmp_path, tier="real")
    assert roi_settings(real) == (real, False)
    with pytest.raises(ValueError):
        load_settings(home=tmp_path, tier="nope")

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


def test_demo_build_writes_its_tables_into_the_docs(tmp_path):

    from braindiff_app.cli.demo_build import write_doc_tables

    report = tmp_path / "report"
    report.mkdir()
    (report / "table1.md").write_text("### Table 1\n\n| a | b |\n|---|---|\n| x | 0.123 |\n")
    (report / "table2_demo-average.md").write_text("### Table 2\n\n| m | v |\n|---|---|\n| guess | 0.9 |\n")
    doc = tmp_path / "doc.md"
    doc.write_text("intro 1.0\n<!-- braindiff:table1 -->\nold 0.5\n<!-- /braindiff:table1 -->\nmiddle\n"
                   "<!-- braindiff:table2 -->\n<!-- /braindiff:table2 -->\nend\n")
    assert write_doc_tables(doc, report) == ["table1", "table2"]
    assert doc.read_text() == ("intro 1.0\n<!-- braindiff:table1 -->\n| a | b |\n|---|---|\n| x | 0.123 |\n"
                               "<!-- /braindiff:table1 -->\nmiddle\n<!-- braindiff:table2 -->\n| m | v |\n|---|---|\n"
                               "| guess | 0.9 |\n<!-- /braindiff:table2 -->\nend\n")
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert write_doc_tables(plain, report) == [] and plain.read_text() == "no markers\n"
    (report / "table1.md").unlink()
    with pytest.raises(FileNotFoundError, match="table1.md: report table missing"):
        write_doc_tables(doc, report)
    assert "0.123" in doc.read_text()  # a failed rewrite leaves the file as it was


def test_readme_tables_are_the_committed_report(tmp_path):
    """README's generated blocks hold exactly what `braindiff demo build` wrote into the shipped report."""
    import shutil

    from braindiff_app.cli.demo_build import write_doc_tables
    from braindiff_app.config import PACKAGE_DIR

    readme = PACKAGE_DIR.parent / "README.md"
    copy = tmp_path / "README.md"
    shutil.copy(readme, copy)
    assert write_doc_tables(copy, PACKAGE_DIR / "precomputed" / "report") == ["table1", "table2"]
    assert copy.read_text() == readme.read_text(), "README's tables differ from precomputed/report: do not edit them"

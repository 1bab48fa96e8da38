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
    assert commands.count("prepare") == 4 and commands.count("fit") == 4 and commands.count("reconstruct") == 6
    assert "demo train-vdvae" not in commands
    assert commands.index("fit") < commands.index("reconstruct") < commands.index("evaluate")
    reconstruct = [argv for _, argv in plan if argv[0] == "reconstruct"]
    assert reconstruct[-2][:3] == ["reconstruct", "--subject", "average"] and "all" in reconstruct[0]
    ceiling = reconstruct[-1]  # subject 1 from its test images' true features, with and without the VDVAE guess
    assert ceiling[:5] == ["reconstruct", "--subject", "1", "--features", "true"]
    assert ceiling[ceiling.index("--ablations") + 1] == "no_vdvae"
    evaluate = [argv for _, argv in plan if argv[0] == "evaluate"][0]
    assert [a.rsplit("/", 1)[-1] for a in evaluate if "/demo-" in a] == [
        "demo-subj01", "demo-subj02", "demo-subj05", "demo-subj07", "demo-average", "demo-subj01-true-features"]
    assert all(argv[argv.index("--batch-size") + 1] == "50" and "--overwrite" in argv for argv in reconstruct)
    fit = [argv for _, argv in plan if argv[0] == "fit"][0]
    assert not any(a.startswith("--alpha") for a in fit)  # the demo tier's own alphas (tests/cli/test_cli_fit.py)
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


def test_the_committed_roi_regressors_record_the_demo_tiers_alphas():
    """The studio's compact regressors were fitted with the paper's alphas x 1500 / 8859 (the demo's training
    images), as `braindiff demo build` fits them."""
    from braindiff_app.config import PACKAGE_DIR
    from braindiff_app.regression import load_regressor

    folder = PACKAGE_DIR / "assets" / "demo" / "home" / "demo" / "regressors"
    for subject in ("subj01", "subj02", "subj05", "subj07"):
        for name, paper in (("vdvae", 50000), ("clip_vision", 60000), ("clip_text", 100000)):
            reg = load_regressor(folder / subject / f"{name}.safetensors")
            assert float(reg.metadata["alpha"]) == pytest.approx(paper * 1500 / 8859, rel=1e-3), (subject, name)
            assert float(reg.alpha_[0]) == pytest.approx(paper * 1500 / 8859, rel=1e-3)


def test_export_roi_replaces_the_workspace_whole_or_not_at_all(tmp_path, monkeypatch):
    import hashlib

    import numpy as np

    import braindiff_app.regression as regression
    from braindiff_app.data import nsd_layout
    from braindiff_app.demo.export import export_roi_workspace
    from tests._standins import make_workspace

    settings = make_workspace(tmp_path)
    for s in (1, 2):
        np.save(settings.subject_dir("prepared", s) / "voxel_ijk.npy", np.zeros((16, 3), np.int64) + s)
        roi = nsd_layout.roi_dir(settings.nsd_dir, s)
        roi.mkdir(parents=True)
        (roi / "prf-visualrois.nii.gz").write_bytes(b"roi of subject %d" % s)
    out = tmp_path / "out"

    def snapshot():
        return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}

    errors = export_roi_workspace(settings, subjects=("1", "2"), rank=2, out=out)
    assert set(errors) == {f"subj0{s}/{n}" for s in (1, 2) for n in regression.FEATURE_NAMES}
    for s in ("1", "2"):  # each compact regressor records the alpha its dense one was fitted with
        for n in regression.FEATURE_NAMES:
            dense = regression.load_regressor(settings.subject_dir("regressors", s) / f"{n}.safetensors")
            compact = regression.load_regressor(out / "demo" / "regressors" / f"subj0{s}" / f"{n}.safetensors")
            assert compact.metadata.get("alpha") == dense.metadata.get("alpha")
    before = snapshot()
    assert len(before) == 2 * (1 + 1 + 3)  # per subject: ROI file, voxel order, three regressors
    real_save, saved = regression.save_regressor, []

    def save_then_die(reg, path, metadata=None):  # killed after subject 1 and part of subject 2 were written
        if len(saved) == 4:
            raise OSError(28, "No space left on device")
        saved.append(path)
        real_save(reg, path, metadata)

    monkeypatch.setattr(regression, "save_regressor", save_then_die)
    for s in (1, 2):  # a new simulation: other ROI files
        (nsd_layout.roi_dir(settings.nsd_dir, s) / "prf-visualrois.nii.gz").write_bytes(b"new roi %d" % s)
    with pytest.raises(OSError, match="No space left"):
        export_roi_workspace(settings, subjects=("1", "2"), rank=3, out=out)
    assert snapshot() == before  # the previous workspace, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]  # no staging folder left
    monkeypatch.setattr(regression, "save_regressor", real_save)
    export_roi_workspace(settings, subjects=("2",), rank=3, out=out)  # one subject: the other is kept
    after = snapshot()
    assert after["demo/prepared/subj01/voxel_ijk.npy"] == before["demo/prepared/subj01/voxel_ijk.npy"]
    changed = {k for k in after if after[k] != before[k]}
    assert changed and all("subj02" in k or "subj2" in k for k in changed), changed

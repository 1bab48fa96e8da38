"""The command line: help, doctor, and clear errors instead of tracebacks."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from braindiff_app.cli import main


def test_help_lists_subcommands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "doctor" in out and "demo" in out


def _subcommands() -> list[list[str]]:
    from braindiff_app.cli import build_parser

    def names(parser) -> dict:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return action.choices

    top = names(build_parser())
    return [[name] for name in top if name != "demo"] + [["demo", name] for name in names(top["demo"])]


@pytest.mark.parametrize("command", _subcommands(), ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert out.startswith("usage: braindiff " + " ".join(command))
    assert len(out.splitlines()) > 5  # a description and the options, not just the usage line


def test_doctor_on_a_fresh_home_finds_the_committed_roi_workspace(tmp_path, capsys):
    assert main(["doctor", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[ok     ] demo ROI studio subj01 (`braindiff roi`) from the committed demo workspace" in out
    assert "[MISSING] demo reconstruct subj01" in out  # that one needs the user's own regressors
    assert f"expected: {tmp_path / 'demo' / 'regressors' / 'subj01' / 'vdvae.safetensors'}" in out


def test_doctor_names_missing_paths(tmp_path, capsys):
    vd = tmp_path / "vd"
    (vd / "vae").mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        (vd / "vae" / name).write_text("{}")
    code = main(["doctor", "--tier", "real", "--vd-dir", str(vd), "--nsd-root", str(tmp_path / "nsd")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"expected: {vd / 'image_unet' / 'config.json'}" in out
    assert f"expected: {vd / 'vae'}" not in out
    assert str(tmp_path / "nsd" / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat") in out
    assert "[MISSING] real stage 1" in out and "BRAINDIFF_VDVAE_CHECKPOINT" in out


def test_doctor_lists_the_nsd_flatmap_inputs(tmp_path, capsys):
    from tests.nsd_factory import make_nsd_anatomy

    args = ["doctor", "--tier", "real", "--home", str(tmp_path / "home"), "--nsd-root", str(tmp_path / "nsd")]
    assert main(args) == 0
    out = capsys.readouterr().out
    surf = tmp_path / "nsd" / "nsddata" / "freesurfer" / "subj01" / "surf"
    assert "[MISSING] real ROI studio painting on subj01's flatmap" in out
    assert f"expected: {surf / 'lh.full.flat.patch.3d'}" in out
    transforms = tmp_path / "nsd" / "nsddata" / "ppdata" / "subj01" / "transforms"
    assert f"expected: {transforms / 'rh.func1pt8-to-layerB2.mgz'}" in out
    make_nsd_anatomy(tmp_path / "nsd")
    assert main(args) == 0
    assert "[ok     ] real ROI studio painting on subj01's flatmap" in capsys.readouterr().out


def test_bad_setting_is_one_line_error(capsys):
    code = main(["doctor", "--device", "tpu"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("braindiff doctor: error: device: expected one of")


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "braindiff_app", "doctor"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "workspace:" in result.stdout


def test_doctor_opens_with_a_summary_line_per_tier(tmp_path, capsys):
    assert main(["doctor", "--home", str(tmp_path)]) == 0
    first, second = capsys.readouterr().out.splitlines()[:2]
    assert first.startswith("demo: ready (") and "not set up: simulated NSD" in first and "files missing" in first
    assert second.startswith("real: not set up, ") and second.endswith("files missing (see [MISSING] below)")


_SETTING_STATES = ("unset", "missing", "empty")


def _doctor_combinations():
    import itertools

    keys = ("nsd_root", "vdvae_checkpoint", "vd_dir", "eval_weights")
    return [dict(tier=tier, **dict(zip(keys, states, strict=True)))
            for tier in ("demo", "real") for states in itertools.product(_SETTING_STATES, repeat=len(keys))]


def test_doctor_reports_every_combination_of_set_and_unset_settings(tmp_path, monkeypatch):
    """Each tier setting unset, set to a missing path, or set to an empty folder: always a report, no traceback."""
    from braindiff_app.config import load_settings
    from braindiff_app.doctor import diagnose, format_report

    for name in ("BRAINDIFF_NSD_ROOT", "BRAINDIFF_VDVAE_CHECKPOINT", "BRAINDIFF_VD_DIR", "BRAINDIFF_EVAL_WEIGHTS",
                 "BRAINDIFF_TIER"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "empty").mkdir()
    for combo in _doctor_combinations():
        paths = {k: None if v == "unset" else str(tmp_path / v) for k, v in combo.items() if k != "tier"}
        settings = load_settings(tier=combo["tier"], home=tmp_path / "home", **paths)
        report = format_report(diagnose(settings), settings)
        assert isinstance(report, str) and report, combo


def test_doctor_cli_in_the_real_tier_with_nothing_set(tmp_path, monkeypatch, capsys):
    for name in ("BRAINDIFF_NSD_ROOT", "BRAINDIFF_VDVAE_CHECKPOINT", "BRAINDIFF_VD_DIR", "BRAINDIFF_EVAL_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    code = main(["doctor", "--tier", "real", "--home", str(tmp_path)])
    captured = capsys.readouterr()
    assert code in (0, 1) and "Traceback" not in captured.err and "NoneType" not in captured.err
    assert "NSD" in captured.out

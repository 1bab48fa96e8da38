"""The command line: help, doctor, and clear errors instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys

from braindiff_app.cli import main


def test_help_lists_subcommands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "doctor" in out and "demo" in out


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

"""The command line's shared settings (CPU threads) and its error boundary (one line, or --debug's traceback)."""

from __future__ import annotations

import pytest

from braindiff_app.cli import main
from braindiff_app.config import auto_threads


def test_auto_threads_leave_the_busy_cores_alone():
    assert auto_threads(2, 0.2) == 2
    assert auto_threads(2, 1.0) == 1 and auto_threads(2, 7.5) == 1
    assert auto_threads(16, 3.4) == 13


def test_threads_flag_sets_torch_and_rejects_nonsense(monkeypatch, capsys):
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert main(["doctor", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main(["doctor", "--threads", "0"]) == 1
        assert "threads: expected a positive count, got 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", [["reconstruct", "--subject", "1"], ["extract", "clip"], ["extract", "vdvae"],
                                     ["evaluate", "somewhere"], ["demo", "build"], ["demo", "train-vdvae"]])
@pytest.mark.parametrize("value", ["0", "-2", "x", "1.5"])
def test_batch_sizes_are_whole_numbers_from_one_before_anything_runs(command, value, capsys):
    # --batch-size 0 failed after the models had loaded ("range() arg 3 must not be zero"), -2 as a trial "not
    # written yet", and left a partial bundle behind.
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--batch-size", value])
    assert exit_.value.code == 2
    assert f"argument --batch-size: expected a whole number >= 1, got '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("command, load, expected", [(["doctor"], 0.1, 4), (["app"], 0.1, 3), (["app"], 3.7, 1),
                                                      (["app", "--threads", "4"], 0.1, 4)])
def test_the_app_leaves_a_core_for_serving(monkeypatch, command, load, expected):
    """A server's ROI batches run beside the pages it serves (bench/load.py measures the effect); --threads wins."""
    import gradio as gr
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    monkeypatch.setattr("os.getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: None)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    try:
        assert main(command) == 0
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def _make_doctor_raise(monkeypatch, exc: Exception) -> None:
    """Make ``braindiff doctor`` raise ``exc`` from inside the command (the parser is rebuilt on every main())."""
    import braindiff_app.cli.doctor as doctor

    def boom(args):
        raise exc

    monkeypatch.setattr(doctor, "run", boom)


def test_unexpected_error_is_one_line_with_a_debug_hint(monkeypatch, capsys):
    monkeypatch.delenv("BRAINDIFF_DEBUG", raising=False)
    _make_doctor_raise(monkeypatch, KeyError("vdvae"))
    code = main(["doctor"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [
        "braindiff doctor: error: KeyError: 'vdvae' (an unexpected error: rerun with --debug for the traceback)"]
    assert "Traceback" not in err


@pytest.mark.parametrize("exc, line", [
    (OSError(28, "No space left on device"), "braindiff doctor: error: [Errno 28] No space left on device"),
    (FileExistsError(17, "File exists", "/tmp/out"),  # mkdir of an --out that is a file: was "[Errno 17] File exists"
     "braindiff doctor: error: /tmp/out: a file is in the way where a folder is needed (File exists); choose another "
     "output folder (--out), or move that file"),
    (PermissionError(13, "Permission denied", "/ro/home/bundles"),
     "braindiff doctor: error: [Errno 13] Permission denied: '/ro/home/bundles'"),
])
def test_disk_errors_are_one_line(monkeypatch, capsys, exc, line):
    monkeypatch.delenv("BRAINDIFF_DEBUG", raising=False)
    _make_doctor_raise(monkeypatch, exc)
    assert main(["doctor"]) == 1
    assert capsys.readouterr().err.splitlines() == [line]


@pytest.mark.parametrize("argv, env", [
    (["--debug", "doctor"], ""),
    (["doctor", "--debug"], ""),
    (["doctor"], "1"),
], ids=["flag-before", "flag-after", "env"])
def test_debug_prints_the_traceback(argv, env, monkeypatch, capsys):
    monkeypatch.setenv("BRAINDIFF_DEBUG", env)
    _make_doctor_raise(monkeypatch, KeyError("vdvae"))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in boom" in err and "KeyError: 'vdvae'" in err
    assert err.splitlines()[-1] == "braindiff doctor: error: KeyError: 'vdvae'"  # no hint: the traceback is there


def test_debug_env_zero_means_off(monkeypatch, capsys):
    monkeypatch.setenv("BRAINDIFF_DEBUG", "0")
    _make_doctor_raise(monkeypatch, KeyError("vdvae"))
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "rerun with --debug" in err


def test_expected_error_stays_one_line_without_hint(monkeypatch, capsys):
    monkeypatch.delenv("BRAINDIFF_DEBUG", raising=False)
    _make_doctor_raise(monkeypatch, FileNotFoundError("/x/vdvae.safetensors: regressor missing; run braindiff fit."))
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["braindiff doctor: error: /x/vdvae.safetensors: regressor missing; run braindiff fit."]


def test_warnings_are_one_line_unless_debugging(monkeypatch):
    # Python's default printed the warning's source file and line ("/.../pipeline.py:464: RuntimeWarning: ...").
    import warnings

    import braindiff_app.cli.doctor as doctor

    default, shown = warnings.formatwarning, []
    monkeypatch.setattr(doctor, "run", lambda args: shown.append(warnings.formatwarning(
        "3 voxels have zero variance", RuntimeWarning, "/x/pipeline.py", 464, "code")) or 0)
    monkeypatch.setenv("BRAINDIFF_DEBUG", "1")
    assert main(["doctor"]) == 0  # --debug keeps where it came from
    monkeypatch.delenv("BRAINDIFF_DEBUG")
    assert main(["doctor"]) == 0
    assert shown[0].startswith("/x/pipeline.py:464: RuntimeWarning: 3 voxels")
    assert shown[1] == "warning: 3 voxels have zero variance\n"
    assert warnings.formatwarning is default  # restored when main() returns

"""The command line's shared settings: CPU threads."""

from __future__ import annotations

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

"""``reconstruct`` under ``accelerate launch``: trials are split between processes, the bundle is the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from braindiff_app.bundles import open_bundle
from braindiff_app.reconstruct import reconstruct_subject
from braindiff_app.regression import load_regressors
from tests._standins import install_stand_ins, make_workspace, stand_in_pipeline
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]

# Each process: stand-in stages, the subject's saved regressors; records the trials it was handed.
SCRIPT = textwrap.dedent("""
    import json, sys
    import pytest
    from accelerate import PartialState
    import braindiff_app.reconstruct as R
    from braindiff_app.config import load_settings
    from braindiff_app.regression import load_regressors
    from tests._standins import StandInImg2Img, install_stand_ins, stand_in_pipeline

    home, out = sys.argv[1], sys.argv[2]
    install_stand_ins(pytest.MonkeyPatch())
    settings = load_settings(home=home, tier="demo", device="cpu")
    R.reconstruct_subject(settings, 1, ablations=["no_text"], out=out, batch_size=1, progress=False,
                          pipeline=stand_in_pipeline(load_regressors(settings, 1)))
    rank = PartialState().process_index
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(sum(call["n"] for call in StandInImg2Img.calls), f)
""")



def test_two_processes_split_the_trials_and_write_the_same_bundle(tmp_path, monkeypatch):
    pytest.importorskip("accelerate")
    settings = make_workspace(tmp_path, subjects=(1,))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "two"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # Two CPU processes in one torch.distributed group (gloo), as `accelerate launch` starts one per GPU.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(script), str(settings.home), str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    # Images each process generated in stage 2 (final and no_text per trial of its share).
    shares = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(share > 0 for share in shares)
    two = open_bundle(out / "demo-subj01")
    assert two.n_trials == 5

    install_stand_ins(monkeypatch)
    one = open_bundle(reconstruct_subject(settings, 1, ablations=["no_text"], out=tmp_path / "one", batch_size=1,
                                          progress=False, pipeline=stand_in_pipeline(load_regressors(settings, 1))))
    assert sum(shares) == 2 * 5  # final + no_text per trial, each trial done once across the two processes
    assert [t.trial_id for t in two.trials] == [t.trial_id for t in one.trials]
    for i in range(5):
        for kind in ("ground_truth", "vdvae", "final", "no_text"):
            np.testing.assert_array_equal(two.image(i, kind), one.image(i, kind))

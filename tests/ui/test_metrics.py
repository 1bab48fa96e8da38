"""The Metrics tab: Table 1 over subjects, Table 2 over ablations, plots; clear message without metrics."""

from __future__ import annotations

import numpy as np
import pytest

from braindiff_app.bundles import write_metrics
from braindiff_app.config import load_settings
from braindiff_app.ui import text
from braindiff_app.ui.metrics import MetricsHandlers
from braindiff_app.ui.state import AppState
from tests.factories import make_bundle


@pytest.fixture
def handlers(tmp_path):
    root = tmp_path / "b"
    for subject, base in (("1", 0.2), ("2", 0.4)):
        bundle = make_bundle(root, name=f"demo-subj0{subject}", subject=subject, n_trials=4, size=8)
        write_metrics(bundle.path, {
            "final": {"PixCorr": np.full(4, base), "SSIM": np.full(4, base + 0.1)},
            "vdvae": {"PixCorr": np.full(4, base + 0.05), "SSIM": np.full(4, base + 0.2)},
        })
    make_bundle(root, name="demo-subj05", subject="5", n_trials=4, size=8)
    return MetricsHandlers(AppState(load_settings(extra_bundle_dirs=(root,))))


def test_tables_and_figures(handlers):
    view = handlers.view(["demo-subj01", "demo-subj02"], "demo-subj01")
    assert "| Subject 1 | 0.200 | 0.300 |" in view.table1
    assert "| Mean of subjects 1, 2 | 0.300 | 0.400 |" in view.table1
    assert "Table 2: ablations of demo-subj01" in view.table2
    assert "| VDVAE guess | 0.250 | 0.400 |" in view.table2
    assert view.bars1 is not None and len(view.bars1.axes) >= 2 and view.distributions is not None


def test_without_metrics_says_what_to_run(handlers):
    view = handlers.view(["demo-subj05"], "demo-subj05")
    assert view.table1 == text.METRICS_NONE and view.table2 == text.METRICS_NONE
    assert view.bars1 is None and view.bars2 is None
    with pytest.raises(ValueError, match="no bundle named 'x'"):
        handlers.view(["x"], None)


def test_the_ceiling_comes_last_with_its_own_interval_and_the_average_keeps_its_place(handlers, tmp_path):
    root = tmp_path / "b"
    ceiling = make_bundle(root, name="demo-subj01-true-features", n_trials=4, size=8, settings={"features": "true"})
    write_metrics(ceiling.path, {"final": {"PixCorr": np.array([0.7, 0.8, 0.9, 0.6]), "SSIM": np.full(4, 0.9)}})
    handlers.state.refresh()
    view = handlers.view(["demo-subj01-true-features", "demo-subj01", "demo-subj02"], None)
    lines = [line for line in view.table1.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split(" | ")[0] for line in lines] == ["| Subject 1", "| Subject 2", "| Mean of subjects 1, 2",
                                                        "| Subject 1, true features (ceiling)"]
    assert "| Mean of subjects 1, 2 | 0.300 | 0.400 |" in view.table1  # the ceiling's 0.75 is not in it
    ci = [line for line in view.intervals1.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split(" | ")[0] for line in ci] == ["| Subject 1", "| Subject 2", "| Mean of subjects 1, 2",
                                                     "| Subject 1, true features (ceiling)"]
    assert ci[0].split(" | ")[1].startswith("0.200") and ci[3].split(" | ")[1].startswith("0.750")
    assert "[" not in ci[2]  # the average: a mean of means, no interval
    assert "the best these image models can do; not part of the mean of subjects" in view.intervals1
    assert "not part of the mean of subjects" not in handlers.view(["demo-subj01", "demo-subj02"], None).intervals1

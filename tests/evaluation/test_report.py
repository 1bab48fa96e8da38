"""Evaluating bundles, Table-1/Table-2 summaries, report files."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from braindiff_app.bundles import open_bundle, write_metrics
from braindiff_app.evaluation import (
    ablation_table,
    compute_metrics,
    evaluate_bundle,
    summary_table,
    table_csv,
    table_markdown,
    write_report,
)
from tests.factories import make_bundle

KINDS = ("ground_truth", "vdvae", "final", "no_text")


def _images(bundle, kind):
    return np.stack([bundle.image(i, kind) for i in range(bundle.n_trials)])


def test_evaluate_bundle_stores_per_trial_metrics(tmp_path):
    path = make_bundle(tmp_path, kinds=("ground_truth", "vdvae", "final", "no_text"), n_trials=4).path
    bundle = open_bundle(path)
    assert bundle.metrics == {}
    computed = evaluate_bundle(bundle)
    assert set(computed) == {"vdvae", "final", "no_text"}
    assert set(bundle.metrics["final"]) == {"PixCorr", "SSIM", "SSIM-ref"}  # the open bundle sees them
    assert set(open_bundle(path).metrics) == {"vdvae", "final", "no_text"}
    expected = compute_metrics(_images(bundle, "ground_truth"), _images(bundle, "final"))
    for metric, values in expected.items():
        np.testing.assert_allclose(bundle.metrics["final"][metric], values, rtol=1e-6)
    assert evaluate_bundle(path) == {}  # resumable: nothing left to do
    assert set(evaluate_bundle(path, kinds=["final"], overwrite=True)) == {"final"}
    with pytest.raises(ValueError, match="kinds: 'no_vision' is not a reconstruction kind"):
        evaluate_bundle(path, kinds=["no_vision"])


def test_summary_and_ablation_tables(tmp_path):
    paths = [make_bundle(tmp_path, "s1", "1", n_trials=5, kinds=KINDS).path,
             make_bundle(tmp_path, "s2", "2", n_trials=6, kinds=KINDS).path]
    for p in paths:
        evaluate_bundle(p, metrics=["PixCorr", "SSIM"])
    bundles = [open_bundle(p) for p in paths]
    rows = summary_table(bundles)
    assert [r["label"] for r in rows] == ["Subject 1", "Subject 2", "Mean of subjects 1, 2"]
    assert rows[0]["PixCorr"] == pytest.approx(bundles[0].metrics["final"]["PixCorr"].mean())
    assert rows[2]["SSIM"] == pytest.approx((rows[0]["SSIM"] + rows[1]["SSIM"]) / 2)
    ablations = ablation_table(bundles[0])
    assert [r["kind"] for r in ablations] == ["vdvae", "no_text", "final"]
    assert rows[0]["PixCorr"] != rows[1]["PixCorr"]
    markdown = table_markdown(rows)
    assert "| Subject | PixCorr ↑ | SSIM ↑ |" in markdown
    assert f"| Subject 1 | {rows[0]['PixCorr']:.3f} |" in markdown
    parsed = list(csv.DictReader(io.StringIO(table_csv(ablations))))
    assert [r["kind"] for r in parsed] == ["vdvae", "no_text", "final"]
    assert float(parsed[2]["PixCorr"]) == pytest.approx(ablations[2]["PixCorr"], rel=1e-5)


def test_true_features_bundle_is_labelled_and_left_out_of_the_average(tmp_path):
    paths = [make_bundle(tmp_path, "s1", "1", n_trials=5, kinds=KINDS).path,
             make_bundle(tmp_path, "s1-true", "1", n_trials=4, kinds=KINDS, settings={"features": "true"}).path,
             make_bundle(tmp_path, "s2", "2", n_trials=6, kinds=KINDS).path,
             make_bundle(tmp_path, "avg", "average", n_trials=3, kinds=KINDS).path]
    for p, value in zip(paths, (0.2, 0.9, 0.4, 0.7), strict=True):
        write_metrics(p, {"final": {"PixCorr": [value] * open_bundle(p).n_trials}})
    bundles = [open_bundle(p) for p in paths]
    assert [b.features for b in bundles] == ["predicted", "true", "predicted", "predicted"]
    rows = summary_table(bundles)
    # the averaged-features bundle is named as the app names it, apart from the mean of the subjects' rows
    assert [r["label"] for r in rows] == ["Subject 1", "Subject 2", "Average of subjects", "Mean of subjects 1, 2",
                                          "Subject 1, true features (ceiling)"]
    assert rows[4]["PixCorr"] == pytest.approx(0.9)
    assert rows[3]["PixCorr"] == pytest.approx(0.3) and rows[3]["n_trials"] == 11  # subjects 1 and 2 only


def test_identification_formatted_as_percent(tmp_path):
    path = make_bundle(tmp_path, n_trials=4).path
    write_metrics(path, {"final": {"AlexNet(2)": [1.0, 1.0, 0.5, 0.0]}})
    assert "| Subject 1 | 62.5% |" in table_markdown(summary_table([open_bundle(path)]))


def test_write_report_files(tmp_path):
    path = make_bundle(tmp_path / "bundles", kinds=KINDS).path
    evaluate_bundle(path)
    written = write_report([open_bundle(path)], tmp_path / "reports")
    assert set(written) == {"table1.md", "table1.csv", "table1.png", "table2_test-subj01.md",
                            "table2_test-subj01.csv", "table2_test-subj01.png", "distributions_test-subj01.png"}
    for p in written.values():
        assert p.is_file() and p.stat().st_size > 0
    assert written["table1.png"].read_bytes()[:4] == b"\x89PNG"
    assert "SSIM-ref" in written["table2_test-subj01.md"].read_text()


def test_metric_bars_draw_each_identification_metrics_chance_line():
    from braindiff_app.evaluation.report import figure_metric_bars

    rows = [{"label": "Subject 1", "demo-CLIP": 0.7, "demo-CLIP 4-way": 0.45, "PixCorr": 0.3}]
    fig = figure_metric_bars(rows)
    chance = {ax.get_title().split(" ")[0] if "4-way" not in ax.get_title() else "4-way":
              [line.get_ydata()[0] for line in ax.get_lines()] for ax in fig.axes if ax.get_visible()}
    assert chance == {"PixCorr": [], "demo-CLIP": [50.0], "4-way": [25.0]}
    heights = {ax.get_title(): ax.patches[0].get_height() for ax in fig.axes if ax.get_visible()}
    assert heights["demo-CLIP 4-way ↑"] == pytest.approx(45.0)


@pytest.mark.parametrize(("names", "grid"), [
    (("PixCorr", "SSIM", "SSIM-ref", "demo-CLIP", "demo-CLIP 4-way"), (1, 5)),  # the demo's five: one row
    (("PixCorr", "SSIM", "AlexNet(2)", "AlexNet(5)", "Inception", "CLIP", "EffNet-B", "SwAV"), (2, 4)),  # the paper's
    (("PixCorr", "SSIM", "SSIM-ref"), (1, 3)),
])
def test_metric_panels_fill_their_rows(names, grid):
    from braindiff_app.evaluation.report import figure_metric_bars

    fig = figure_metric_bars([{"label": "Subject 1", **{m: 0.5 for m in names}}])
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(names)
    rows = sorted({round(ax.get_position().y0, 3) for ax in fig.axes})
    cols = sorted({round(ax.get_position().x0, 3) for ax in fig.axes})
    assert (len(rows), len(cols)) == grid

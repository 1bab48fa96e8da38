"""bench/ablations.py: means with intervals and paired differences, read from a bundle's metrics.json."""

import json
import re

import numpy as np

from tests._bench import load_bench


def _bench():
    return load_bench("ablations")


def test_paired_differences_match_the_per_trial_scores(tmp_path, capsys):
    from tests.factories import make_bundle

    rng = np.random.default_rng(0)
    bundle = make_bundle(tmp_path, n_trials=40).path
    final = rng.uniform(0, 1, 40)
    worse = final - 0.2 + rng.normal(0, 0.01, 40)  # paired: a clear, tight difference
    four = (rng.random(40) < 0.5).astype(float)
    (bundle / "metrics.json").write_text(json.dumps({"final": {"PixCorr": final.tolist(), "demo-CLIP 4-way":
                                                               four.tolist()},
                                                     "no_text": {"PixCorr": worse.tolist()}}))
    assert _bench().main([str(bundle), "--metrics", "PixCorr,demo-CLIP 4-way"]) == 0
    out = capsys.readouterr().out
    row = re.search(r"\| final \| ([0-9.]+) \[([0-9.]+), ([0-9.]+)\] \| ([0-9.]+)% ", out)
    assert float(row.group(1)) == round(final.mean(), 3) and float(row.group(2)) < final.mean() < float(row.group(3))
    assert float(row.group(4)) == round(100 * four.mean(), 1)
    diff = re.search(r"\| no_text \| ([+-][0-9.]+) \[([+-][0-9.]+), ([+-][0-9.]+)\] \| - \|", out)
    assert float(diff.group(1)) == round((worse - final).mean(), 3)
    assert float(diff.group(3)) < 0  # the whole interval below zero
    assert "| final | +" not in out  # the full model is not compared with itself


def test_unknown_metric_is_refused_by_name(capsys):
    assert _bench().main(["--metrics", "PixCorr,Nope"]) == 2
    assert "--metrics: unknown Nope" in capsys.readouterr().err

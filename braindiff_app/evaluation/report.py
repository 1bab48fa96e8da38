"""Evaluate bundles and report: Table-1/Table-2 style summaries (markdown, CSV) and matplotlib figures.

Table 1 of the paper has one row per subject (plus their average) for the full model; Table 2 one row per
ablation of one subject. :func:`summary_table` and :func:`ablation_table` build those rows from bundles' stored
per-trial metrics; :func:`write_report` writes the tables and figures into a folder; the figure functions return
matplotlib figures for the app's Metrics tab.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from braindiff_app.atomic import atomic_write_bytes
from braindiff_app.bundles import ABLATION_KINDS, KIND_LABELS, Bundle, open_bundle, write_metrics
from braindiff_app.evaluation.backbones import Backbones
from braindiff_app.evaluation.metrics import PIXEL_METRICS, available_metrics, metrics_from_features, pixel_metrics
from braindiff_app.evaluation.registry import METRICS, check_metrics, format_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "TABLE2_KINDS",
    "evaluate_bundle",
    "summary_table",
    "ablation_table",
    "table_columns",
    "table_markdown",
    "table_csv",
    "figure_metric_bars",
    "figure_distributions",
    "write_report",
]

# Table 2's row order: stage 1 alone, the ablations, then the full model.
TABLE2_KINDS = ("vdvae",) + ABLATION_KINDS + ("final",)


def _load_kind(bundle: Bundle, kind: str) -> np.ndarray:
    from tqdm.auto import tqdm

    images = [bundle.image(i, kind) for i in tqdm(range(bundle.n_trials), desc=f"{bundle.name}: {kind}",
                                                    leave=False, disable=None)]
    return np.stack(images)


def evaluate_bundle(bundle: Bundle | str | os.PathLike, backbones: Backbones | None = None,
                    metrics: Iterable[str] | None = None, kinds: Iterable[str] | None = None,
                    overwrite: bool = False, batch_size: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """Compute per-trial metrics of every image kind against ``ground_truth`` and store them in the bundle.

    Resumable: metrics already in the bundle's ``metrics.json`` are kept unless ``overwrite``; each kind is
    written as soon as it is done. The ground truth goes through each network once.

    Parameters
    ----------
    bundle : Bundle or path
    backbones : Backbones or None, default None
        Loaded networks (on their device); None: pixel metrics only.
    metrics : iterable of str or None, default None
        Metrics wanted; None: all computable with ``backbones``. Metrics the backbones cannot compute are
        left out (their absence was reported when loading them).
    kinds : iterable of str or None, default None
        Image kinds to evaluate; None: every kind of the bundle but ``ground_truth``.
    overwrite : bool, default False
        Recompute metrics already stored.
    batch_size : int, default 32

    Returns
    -------
    dict of kind -> dict of metric -> array of shape (n_trials,), float32
        What was computed in this call. A :class:`Bundle` passed in shows the new values in ``.metrics``.
    """
    bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    available = available_metrics(backbones)
    wanted = [m for m in check_metrics(metrics) if m in available] if metrics is not None else list(available)
    kinds = [k for k in bundle.kinds if k != "ground_truth"] if kinds is None else list(kinds)
    for kind in kinds:
        if kind not in bundle.kinds or kind == "ground_truth":
            raise ValueError(f"kinds: {kind!r} is not a reconstruction kind of bundle {bundle.name} "
                             f"(kinds {list(bundle.kinds)}).")
    stored = bundle.metrics
    ground_truth: np.ndarray | None = None
    gt_features: dict[str, np.ndarray] = {}
    computed: dict[str, dict[str, np.ndarray]] = {}
    for kind in kinds:
        todo = [m for m in wanted if overwrite or m not in stored.get(kind, {})]
        if not todo:
            continue
        if ground_truth is None:
            ground_truth = _load_kind(bundle, "ground_truth")
        recon = _load_kind(bundle, kind)
        todo = [m for m in todo if len(recon) >= METRICS[m].min_trials]
        results = pixel_metrics(ground_truth, recon, [m for m in todo if m in PIXEL_METRICS])
        network = [m for m in todo if m not in PIXEL_METRICS]
        if network:
            new = [m for m in network if m not in gt_features]
            if new:
                gt_features.update(backbones.features(ground_truth, new, batch_size=batch_size))
            rec_features = backbones.features(recon, network, batch_size=batch_size)
            results.update(metrics_from_features({m: gt_features[m] for m in network}, rec_features))
        computed[kind] = {m: results[m] for m in todo}
        write_metrics(bundle.path, {kind: computed[kind]})
        bundle._metrics = None  # the Bundle caches metrics.json: make it read the new file on next access
    return computed


# Table 1's row of the mean over the numbered subjects' rows (the paper's average), e.g. "Mean of subjects 1, 2, 5,
# 7"; the bundle reconstructed from the subjects' averaged features is the row "Average of subjects", as the app
# names it.
MEAN_LABEL = "Mean of subjects {numbers}"


def _subject_label(bundle: Bundle) -> str:
    subject = bundle.subject
    label = f"Subject {int(subject)}" if subject.isdigit() else \
        "Average of subjects" if subject == "average" else f"Subject {subject}"
    return f"{label}, true features (ceiling)" if not bundle.decoded else label


def table_columns(bundles: Sequence[Bundle], kinds: Iterable[str] = ("final",)) -> list[str]:
    """Metric columns present for any of ``kinds`` in any of ``bundles``, in table order."""
    present = {m for b in bundles for k in kinds for m in b.metrics.get(k, {})}
    return [m for m in METRICS if m in present]


def _means(bundle: Bundle, kind: str, columns: Sequence[str]) -> dict[str, float]:
    table = bundle.metrics.get(kind, {})
    out = {}
    for metric in columns:
        values = table.get(metric)
        finite = values[np.isfinite(values)] if values is not None else np.array([])
        out[metric] = float(finite.mean()) if finite.size else float("nan")
    return out


def summary_table(bundles: Sequence[Bundle], kind: str = "final",
                  metrics: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Table-1 rows: one per bundle (subject) for one image kind, then the average over subjects.

    Parameters
    ----------
    bundles : sequence of Bundle
        Evaluated bundles (their ``metrics.json``).
    kind : str, default "final"
        Image kind summarised (``final`` = Brain-Diffuser).
    metrics : iterable of str or None, default None
        Columns; None: every metric stored for ``kind`` in any bundle.

    Returns
    -------
    list of dict
        Each row: ``label``, ``bundle`` (name, "" for the average), ``key`` (the bundle's :attr:`Bundle.key`, ""
        for the average), ``n_trials``, ``features`` ("predicted", or
        "true" for the ceiling) and one mean per metric (NaN where not computed). The :data:`MEAN_LABEL` row
        (mean of the per-subject means) is added when two or more bundles of numbered subjects are given; a
        subject-``average`` bundle keeps its own row, and so does a bundle made from true features (the image
        models' ceiling), which the mean leaves out and which comes last.
    """
    columns = table_columns(bundles, (kind,)) if metrics is None else list(check_metrics(metrics))
    labels = [_subject_label(b) for b in bundles]
    rows = []
    for bundle, label in zip(bundles, labels, strict=True):
        if labels.count(label) > 1:
            label = f"{label} ({bundle.name})"
        rows.append({"label": label, "bundle": bundle.name, "key": bundle.key, "n_trials": bundle.n_trials,
                     "features": bundle.features, **_means(bundle, kind, columns)})
    numbered = [(r, b) for r, b in zip(rows, bundles, strict=True) if b.subject.isdigit() and b.decoded]
    subject_rows = [r for r, _ in numbered]
    if len(subject_rows) >= 2:
        average = {m: float(np.nanmean([r[m] for r in subject_rows])) if any(np.isfinite(r[m])
                                                                           for r in subject_rows) else float("nan")
                   for m in columns}
        numbers = ", ".join(str(int(b.subject)) for _, b in numbered)
        rows.append({"label": MEAN_LABEL.format(numbers=numbers), "bundle": "", "key": "",
                     "n_trials": sum(r["n_trials"] for r in subject_rows), "features": "predicted", **average})
    # The ceiling last: a bound, not one more subject.
    return [r for r in rows if r["features"] != "true"] + [r for r in rows if r["features"] == "true"]


def ablation_table(bundle: Bundle, metrics: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Table-2 rows for one bundle: Only-VDVAE, each ablation present, then the full model.

    Returns
    -------
    list of dict
        Each row: ``label`` (plain words), ``kind``, ``n_trials`` and one mean per metric.
    """
    kinds = [k for k in TABLE2_KINDS if k in bundle.kinds]
    columns = table_columns([bundle], kinds) if metrics is None else list(check_metrics(metrics))
    return [{"label": KIND_LABELS[k], "kind": k, "n_trials": bundle.n_trials, **_means(bundle, k, columns)}
            for k in kinds]


def _metric_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [m for m in METRICS if rows and m in rows[0]]


def table_markdown(rows: Sequence[dict[str, Any]], title: str | None = None) -> str:
    """Render rows as a markdown table in the paper's formats (percentages for identification, arrows)."""
    columns = _metric_columns(rows)
    header = ["Method" if rows and "kind" in rows[0] else "Subject"]
    header += [f"{m} {'↑' if METRICS[m].higher_is_better else '↓'}" for m in columns]
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * len(columns)) + "|")
    for row in rows:
        cells = [str(row["label"])] + [format_value(m, row[m]) for m in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if any(m == "demo-CLIP" for m in columns):
        lines += ["", "demo-CLIP: identification with the demo tier's small CLIP encoder, not the paper's CLIP."]
    return "\n".join(lines) + "\n"


def table_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Render rows as CSV text with the raw means (fractions, not percentages; empty where not computed)."""
    columns = _metric_columns(rows)
    keys = [k for k in ("label", "bundle", "kind", "n_trials") if rows and k in rows[0]]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys + columns)
    for row in rows:
        values = ["" if not np.isfinite(row[m]) else f"{row[m]:.6g}" for m in columns]
        writer.writerow([row[k] for k in keys] + values)
    return buffer.getvalue()


def _panels(n: int) -> tuple[Figure, np.ndarray]:
    """A figure with one panel per metric: up to five in one row, more in two rows (the demo's five metrics were
    four and a lone fifth)."""
    from matplotlib.figure import Figure

    n = max(n, 1)
    ncols = n if n <= 5 else -(-n // 2)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.8 * nrows + 0.6), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel()


def figure_metric_bars(rows: Sequence[dict[str, Any]], title: str = ""):
    """Bar chart per metric (one panel each) of the rows' means: subjects (Table 1) or ablations (Table 2).

    Returns
    -------
    matplotlib.figure.Figure
    """
    columns = _metric_columns(rows)
    fig, axes = _panels(len(columns))
    labels = [str(r["label"]) for r in rows]
    # Orange: the mean of subjects (Table 1, the one row of no bundle) or the full model (Table 2); grey, hatched:
    # the ceiling from true features.
    colors = ["#8c8c8c" if r.get("features") == "true" else "#dd8452" if r.get("bundle") == ""
              or r.get("kind") == "final" else "#4c72b0" for r in rows]
    hatches = ["//" if r.get("features") == "true" else "" for r in rows]
    for ax, metric in zip(axes, columns, strict=False):
        values = [r[metric] for r in rows]
        scale = 100.0 if METRICS[metric].method == "identification" else 1.0
        ax.bar(range(len(rows)), np.nan_to_num(np.asarray(values) * scale), color=colors, hatch=hatches,
               edgecolor="white")
        if METRICS[metric].method == "identification":
            ax.axhline(100 / METRICS[metric].ways, color="gray", lw=0.8, ls="--")  # chance
            ax.set_ylim(0, 100)
        ax.set_title(f"{metric} {'↑' if METRICS[metric].higher_is_better else '↓'}", fontsize=10)
        ax.set_xticks(range(len(rows)), labels, rotation=35, ha="right", fontsize=8)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def figure_distributions(bundle: Bundle, kinds: Iterable[str] | None = None,
                         metrics: Iterable[str] | None = None):
    """Per-trial distributions (box plots, one panel per metric, one box per image kind) of one bundle.

    Returns
    -------
    matplotlib.figure.Figure
    """
    kinds = [k for k in (TABLE2_KINDS if kinds is None else kinds) if k in bundle.metrics]
    columns = table_columns([bundle], kinds) if metrics is None else list(check_metrics(metrics))
    fig, axes = _panels(len(columns))
    for ax, metric in zip(axes, columns, strict=False):
        data, labels = [], []
        for kind in kinds:
            values = bundle.metrics[kind].get(metric)
            if values is not None and np.isfinite(values).any():
                data.append(values[np.isfinite(values)])
                labels.append(KIND_LABELS[kind])
        if data:
            ax.boxplot(data, showfliers=False)
            ax.set_xticks(range(1, len(labels) + 1), labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{metric} per trial", fontsize=10)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    fig.suptitle(f"{bundle.name}: per-trial metrics (n = {bundle.n_trials})")
    return fig


def _save_figure(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_report(bundles: Sequence[Bundle], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the summary tables and figures of evaluated bundles into ``out_dir``.

    Files: ``table1.md`` / ``table1.csv`` / ``table1.png`` (full model per subject and the average), and per
    bundle ``table2_<name>.md`` / ``.csv`` / ``.png`` (ablations, when the bundle has more than the full model
    evaluated) and ``distributions_<name>.png`` (per-trial box plots).

    Parameters
    ----------
    bundles : sequence of Bundle
    out_dir : path
        Created when missing; files of the same names are replaced.

    Returns
    -------
    dict of str to Path
        Keys like ``"table1.md"``, ``"table2_demo-subj01.csv"``, ``"distributions_demo-subj01.png"``.
    """
    if not bundles:
        raise ValueError("bundles: expected at least one evaluated bundle, got none.")
    out = Path(out_dir)
    paths: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        atomic_write_bytes(out / name, text.encode("utf-8"))
        paths[name] = out / name

    rows = summary_table(bundles)
    put("table1.md", table_markdown(rows, "Brain-Diffuser per subject (Table 1)"))
    put("table1.csv", table_csv(rows))
    paths["table1.png"] = _save_figure(figure_metric_bars(rows, "Brain-Diffuser per subject"), out / "table1.png")
    for bundle in bundles:
        slug = _slug(bundle.name)
        evaluated = [k for k in TABLE2_KINDS if k in bundle.metrics]
        if len(evaluated) > 1:
            ablations = ablation_table(bundle)
            put(f"table2_{slug}.md", table_markdown(ablations, f"{bundle.name}: ablations (Table 2)"))
            put(f"table2_{slug}.csv", table_csv(ablations))
            paths[f"table2_{slug}.png"] = _save_figure(figure_metric_bars(ablations, f"{bundle.name}: ablations"),
                                                       out / f"table2_{slug}.png")
        if evaluated:
            paths[f"distributions_{slug}.png"] = _save_figure(figure_distributions(bundle),
                                                              out / f"distributions_{slug}.png")
    return paths

"""The Metrics tab: Table-1 (subjects) and Table-2 (ablations) summaries and plots of the evaluated bundles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from braindiff_app.evaluation import (
    BASELINE_KINDS,
    BASELINE_LABELS,
    METRICS,
    TABLE2_KINDS,
    ablation_table,
    figure_distributions,
    figure_metric_bars,
    interval_markdown,
    interval_rows,
    summary_table,
    table_markdown,
)
from braindiff_app.ui import text
from braindiff_app.ui.state import AppState

__all__ = ["MetricsHandlers", "MetricsView", "build_metrics_tab"]


@dataclass(frozen=True)
class MetricsView:
    """Tables (markdown) and figures (matplotlib) of the chosen bundles; figures are None without metrics.

    ``table1`` and ``table2`` are the plain means (as in the README); ``intervals1`` and ``intervals2`` the tables
    the tab shows: the same means with bootstrap 95% intervals over trials, Table 2 with the baseline rows.
    ``missing`` names the paper's metrics these bundles lack, with the reason.
    """

    table1: str
    table2: str
    bars1: Any
    bars2: Any
    distributions: Any
    intervals1: str = ""
    intervals2: str = ""
    missing: str = ""


class MetricsHandlers:
    """The Metrics tab's actions, independent of gradio."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def default_selection(self) -> list[str]:
        """Bundles of the configured tier (all bundles if none is of that tier)."""
        names = [b.key for b in self.state.bundles if b.tier == self.state.settings.tier]
        return names or [b.key for b in self.state.bundles]

    def view(self, bundle_names: list[str], ablation_bundle: str | None) -> MetricsView:
        """Summaries of ``bundle_names`` (Table 1) and of ``ablation_bundle``'s ablations (Table 2)."""
        bundles = [self.state.bundle(n) for n in bundle_names]
        evaluated = [b for b in bundles if b.metrics.get("final")]
        table1, bars1, intervals1 = text.METRICS_NONE, None, text.METRICS_NONE
        if evaluated:
            rows = summary_table(evaluated)
            table1, bars1 = table_markdown(rows, text.TABLE1), figure_metric_bars(rows)
            by_key = {b.key: b for b in evaluated}  # the rows' order is summary_table's (the ceiling last)
            with_ci = interval_rows([(row["label"], by_key[row["key"]].metrics["final"]) for row in rows if row["key"]])
            for i, row in enumerate(rows):
                if not row["key"]:  # the average over subjects: a mean of means, no interval, in its table-1 place
                    nan = float("nan")
                    with_ci.insert(i, {"label": row["label"],
                                       **{m: (row.get(m, nan), nan, nan) for m in with_ci[0] if m != "label"}})
            intervals1 = interval_markdown(with_ci, text.TABLE1, first_column="Subject")
            if any(row["features"] == "true" for row in rows):
                intervals1 += f"\n\n{text.METRICS_CEILING}"
        table2, bars2, distributions, intervals2 = "", None, None, ""
        if ablation_bundle:
            bundle = self.state.bundle(ablation_bundle)
            if bundle.metrics:
                rows = ablation_table(bundle)
                label = f"{bundle.name} (subject {bundle.subject})"
                table2 = table_markdown(rows, text.TABLE2.format(label=label))
                bars2, distributions = figure_metric_bars(rows), figure_distributions(bundle)
                labels = {**text.KIND_LABELS, **BASELINE_LABELS}
                entries = [(labels[k], bundle.metrics[k]) for k in (*TABLE2_KINDS, *BASELINE_KINDS)
                           if bundle.metrics.get(k)]
                intervals2 = interval_markdown(interval_rows(entries), text.TABLE2.format(label=label))
                if not any(bundle.metrics.get(k) for k in BASELINE_KINDS):
                    intervals2 += "\n\n" + text.NO_BASELINES.format(path=bundle.path)
            else:
                table2 = intervals2 = text.METRICS_NONE
        return MetricsView(table1, table2, bars1, bars2, distributions, intervals1, intervals2,
                           self.missing_metrics(bundles))

    def missing_metrics(self, bundles) -> str:
        """Markdown list of the registry's metrics that none of ``bundles`` holds, each with the reason."""
        present = {m for b in bundles for table in b.metrics.values() for m in table}
        if not present:
            return ""
        tiers = {b.tier for b in bundles}
        lines = []
        for name, info in METRICS.items():
            if name in present:
                continue
            if info.feature_source == "demo-CLIP" and "demo" not in tiers:
                continue  # the demo's stand-in: not expected on NSD
            if info.feature_source == "CLIP" and f"demo-{name}" in present:
                reason = text.MISSING_CLIP_DEMO
            else:
                reason = text.MISSING_NETWORK.format(network=info.backbone or "network")
            lines.append(f"- **{name}** ({info.description}): {reason}")
        return text.MISSING_METRICS + "\n" + "\n".join(lines) if lines else ""


def build_metrics_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the Metrics tab inside ``app``; returns its components keyed ``metrics.<name>``."""
    handlers = MetricsHandlers(state)
    names = state.choices()  # (label, key): the labels say which bundle is a subject, an average or the ceiling
    with gr.Tab(text.METRICS_TAB, id="metrics"):
        gr.Markdown(text.METRICS_INTRO)
        with gr.Row():
            chosen = gr.Dropdown(names, value=handlers.default_selection(), multiselect=True,
                                 label=text.METRICS_BUNDLES, scale=3)
            ablation = gr.Dropdown(names, value=state.default_bundle, label=text.METRICS_ABLATION_BUNDLE, scale=2)
            update = gr.Button(text.METRICS_REFRESH, scale=0)
        table1 = gr.Markdown(elem_id="metrics-table1")
        bars1 = gr.Plot(label=text.PLOT_BARS1, show_label=False)
        table2 = gr.Markdown(elem_id="metrics-table2")
        bars2 = gr.Plot(label=text.PLOT_BARS2, show_label=False)
        distributions = gr.Plot(label=text.PLOT_DISTRIBUTIONS, show_label=False)
        missing = gr.Markdown(elem_id="metrics-missing")

    def show(bundle_names, ablation_name):
        try:
            view = handlers.view(list(bundle_names or []), ablation_name)
        except ValueError as exc:
            raise gr.Error(text.toast(str(exc)), print_exception=False) from None
        return view.intervals1, view.bars1, view.intervals2, view.bars2, view.distributions, view.missing

    def metrics_picker(bundle_names, ablation_name):
        """After a rescan (:meth:`AppState.rescan`): the new choices, keeping the chosen bundles still there."""
        choices = state.choices()
        kept = list(dict.fromkeys(k for k in map(state.key_of, bundle_names or []) if k))
        return [gr.update(choices=choices, value=kept or handlers.default_selection()),
                gr.update(choices=choices, value=state.key_of(ablation_name) or state.default_bundle)]

    state.pickers.append(([chosen, ablation], [chosen, ablation], metrics_picker))  # "Rescan bundles" (Browse)
    outputs = [table1, bars1, table2, bars2, distributions, missing]
    update.click(show, [chosen, ablation], outputs, api_name="metrics_tables", show_progress_on=[table1])
    # Choosing applies at once, as every other picker of the app does (the tables stayed on the old bundles until
    # Update was pressed); Update re-reads the bundles' metrics after a new `braindiff evaluate`.
    chosen.change(show, [chosen, ablation], outputs, api_name=False, show_progress_on=[table1])
    ablation.change(show, [chosen, ablation], outputs, api_name=False, show_progress_on=[table2])
    app.load(show, [chosen, ablation], outputs, api_name=False)
    return {f"metrics.{k}": v for k, v in {"chosen": chosen, "ablation": ablation, "table1": table1,
                                            "table2": table2}.items()}

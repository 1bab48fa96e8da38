"""The Metrics tab: Table-1 (subjects) and Table-2 (ablations) summaries and plots of the evaluated bundles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from braindiff_app.evaluation import (
    ablation_table,
    figure_distributions,
    figure_metric_bars,
    summary_table,
    table_markdown,
)
from braindiff_app.ui import text
from braindiff_app.ui.state import AppState

__all__ = ["MetricsHandlers", "MetricsView", "build_metrics_tab"]


@dataclass(frozen=True)
class MetricsView:
    """Tables (markdown) and figures (matplotlib) of the chosen bundles; figures are None without metrics."""

    table1: str
    table2: str
    bars1: Any
    bars2: Any
    distributions: Any


class MetricsHandlers:
    """The Metrics tab's actions, independent of gradio."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def default_selection(self) -> list[str]:
        """Bundles of the configured tier (all bundles if none is of that tier)."""
        names = [b.name for b in self.state.bundles if b.tier == self.state.settings.tier]
        return names or [b.name for b in self.state.bundles]

    def view(self, bundle_names: list[str], ablation_bundle: str | None) -> MetricsView:
        """Summaries of ``bundle_names`` (Table 1) and of ``ablation_bundle``'s ablations (Table 2)."""
        bundles = [self.state.bundle(n) for n in bundle_names]
        evaluated = [b for b in bundles if b.metrics.get("final")]
        table1, bars1 = text.METRICS_NONE, None
        if evaluated:
            rows = summary_table(evaluated)
            table1, bars1 = table_markdown(rows, text.TABLE1), figure_metric_bars(rows)
        table2, bars2, distributions = "", None, None
        if ablation_bundle:
            bundle = self.state.bundle(ablation_bundle)
            if bundle.metrics:
                rows = ablation_table(bundle)
                label = f"{bundle.name} (subject {bundle.subject})"
                table2 = table_markdown(rows, text.TABLE2.format(label=label))
                bars2, distributions = figure_metric_bars(rows), figure_distributions(bundle)
            else:
                table2 = text.METRICS_NONE
        return MetricsView(table1, table2, bars1, bars2, distributions)


def build_metrics_tab(app: gr.Blocks, state: AppState) -> dict[str, gr.components.Component]:
    """Build the Metrics tab inside ``app``; returns its components keyed ``metrics.<name>``."""
    handlers = MetricsHandlers(state)
    names = [b.name for b in state.bundles]
    with gr.Tab(text.METRICS_TAB, id="metrics"):
        gr.Markdown(text.METRICS_INTRO)
        with gr.Row():
            chosen = gr.Dropdown(names, value=handlers.default_selection(), multiselect=True,
                                 label=text.METRICS_BUNDLES, scale=3)
            ablation = gr.Dropdown(names, value=state.default_bundle, label=text.METRICS_ABLATION_BUNDLE, scale=2)
            update = gr.Button(text.METRICS_REFRESH, scale=0)
        table1 = gr.Markdown()
        bars1 = gr.Plot(show_label=False)
        table2 = gr.Markdown()
        bars2 = gr.Plot(show_label=False)
        distributions = gr.Plot(show_label=False)

    def show(bundle_names, ablation_name):
        try:
            view = handlers.view(list(bundle_names or []), ablation_name)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return view.table1, view.bars1, view.table2, view.bars2, view.distributions

    outputs = [table1, bars1, table2, bars2, distributions]
    update.click(show, [chosen, ablation], outputs, api_name="metrics_tables")
    app.load(show, [chosen, ablation], outputs, api_name=False)
    return {f"metrics.{k}": v for k, v in {"chosen": chosen, "ablation": ablation, "table1": table1,
                                            "table2": table2}.items()}

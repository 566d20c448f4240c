"""The HTML run report: `<output_dir>/reports/<pipeline>/<run id>/index.html`, one self-contained page.

`pipeline.ops.run.run_and_report` calls `report_after_run` at the end of every
run (also a failed or stopped one); `tfxt report [--run-id]` (`runners.cli.report`)
calls `write_report` for any past run. Everything comes from ML Metadata and
the artifacts (`pipeline.ops.report_data`). The page needs no network: plots
are inline SVG, styles are inline, there is no script.

The page is a list of sections. Each function in `SECTIONS` takes the run's
`ReportData` and returns a `Section` (the template under `report_templates/`
and its values), or None when the run has nothing for it; so a section appears
as soon as its data does. To add one, write a function and a template and put
the function in `SECTIONS`.
"""

import dataclasses
import json
import logging
import posixpath
from typing import Any, Callable, Dict, List, Optional, TextIO

from pipeline.config import PipelineConfig
from pipeline.ops import report_plots
from pipeline.ops.report_data import ReportData, collect, per_class
from pipeline.ops.report_render import template_environment
from pipeline.ops.summary import ACCURACY

REPORT_FILE = "index.html"


@dataclasses.dataclass
class Section:
    """One part of the page: its anchor id, title, template and the template's values."""

    id: str
    title: str
    template: str
    values: Dict[str, Any]


def report_dir(config: PipelineConfig, run_id: str) -> str:
    """Where the report (and the run's model card) of `run_id` is written."""
    return posixpath.join(config.output_dir, "reports", config.pipeline_name, run_id)


def run_section(data: ReportData) -> Section:
    run = data.run
    failed = [n.node_id for n in run.nodes if n.state not in ("COMPLETE", "CACHED")]
    return Section("run", "Run", "run.html.j2", {
        "run": run, "failed": failed, "total_seconds": sum(n.seconds for n in run.nodes),
        "tensorboard_logdir": data.tensorboard_logdir})


def data_section(data: ReportData) -> Optional[Section]:
    if not data.statistics and not data.anomalies:
        return None
    train, eval_ = data.statistics.get("train", {}), data.statistics.get("eval", {})
    names = list(dict.fromkeys(list(train) + list(eval_)))
    plots = [(name, report_plots.feature_distribution(train.get(name), eval_.get(name)))
             for name in names]
    return Section("data", "Data", "data.html.j2", {
        "statistics": data.statistics, "plots": plots, "anomalies": data.anomalies,
        "validated": data.run.node("ExampleValidator") is not None})


def drift_section(data: ReportData) -> Optional[Section]:
    if not data.drift_skew and data.drift is None and data.decay is None:
        return None
    return Section("drift", "Drift, skew and decay", "drift.html.j2", {
        "drift_skew": data.drift_skew, "drift": data.drift, "decay": data.decay,
        "decay_by_model": data.decay_by_model})


def model_section(data: ReportData) -> Optional[Section]:
    metrics = data.summary.metrics
    if not metrics and data.summary.blessed is None:
        return None
    ordered = dict(sorted(metrics.items(), key=lambda item: (item[0] != "Overall", item[0])))
    threshold = data.thresholds.get("SparseCategoricalAccuracy", {})
    confusion = data.confusion.get("Overall")
    return Section("model", "Model", "model.html.j2", {
        "metrics": ordered, "accuracy_key": ACCURACY, "threshold": threshold,
        "slice_plot": report_plots.slice_accuracy(ordered, ACCURACY, threshold.get("min"))
        if ordered else None,
        "confusion_plot": report_plots.confusion_matrix(confusion, data.class_names) if confusion else None,
        "per_class": per_class(data), "summary": data.summary,
        "baseline": data.baseline_metrics.get("Overall", {}), "diffs": data.metric_diffs.get("Overall", {}),
        "baseline_model_id": data.baseline_model_id})


def history_section(data: ReportData) -> Optional[Section]:
    points = data.history
    if not any(p.accuracy is not None for p in points):
        return None
    stable = data.serving_labels.get("stable")
    rolled_back = rolled_back_versions(points, stable)
    return Section("history", "History", "history.html.j2", {
        "points": points, "stable": stable, "rolled_back": rolled_back,
        "plot": report_plots.history(points, "accuracy", rolled_back, stable)})


def rolled_back_versions(points, stable: Optional[int]) -> List[str]:
    """Pushed versions newer than the `stable` label: they were pushed, then rolled back from."""
    if stable is None:
        return []
    return [p.pushed_version for p in points
            if p.new_push and p.pushed_version and int(p.pushed_version) > stable]


def edge_section(data: ReportData) -> Optional[Section]:
    if data.edge_blessing is None:
        return None
    return Section("edge", "Edge", "edge.html.j2", {
        "blessing": data.edge_blessing, "readiness": data.edge_readiness, "uri": data.edge_uri})


def serving_section(data: ReportData) -> Optional[Section]:
    summary = data.summary
    if not summary.pushed_version and not data.serving_labels and summary.blessed is None:
        return None
    return Section("serving", "Serving", "serving.html.j2", {
        "summary": summary, "labels": data.serving_labels, "model": data.pipeline_name,
        "rest_port": data.rest_port, "grpc_port": data.grpc_port,
        "example": json.dumps(example_row(data))})


def example_row(data: ReportData) -> Dict[str, Any]:
    """A request row for the curl example: the train split's median or most frequent value per feature."""
    from models import features

    train = data.statistics.get("train", {})
    row: Dict[str, Any] = {}
    for name in list(features.CATEGORICAL_FEATURE_KEYS) + list(features.NUMERIC_FEATURE_KEYS):
        stats = train.get(name)
        if stats is None:
            continue
        if stats.kind == "numeric":
            row[name] = round(stats.values["median"], 2)
        elif stats.histogram:
            row[name] = stats.histogram[0][0]
    return row


SECTIONS: List[Callable[[ReportData], Optional[Section]]] = [
    run_section, data_section, drift_section, model_section, history_section, edge_section,
    serving_section,
]


def render(data: ReportData) -> str:
    """The whole page as one HTML string."""
    sections = [s for s in (section(data) for section in SECTIONS) if s is not None]
    environment = template_environment()
    bodies = [(s, environment.get_template(s.template).render(**s.values)) for s in sections]
    return environment.get_template("index.html.j2").render(data=data, sections=bodies)


def write_report(config: PipelineConfig, run_id: Optional[str] = None) -> str:
    """Writes the report (and, for a pushed model, its model card) of `run_id`; returns the page path.

    Raises tracking.RunNotFoundError when there is no such run.
    """
    from tfx.dsl.io import fileio

    from pipeline.ops import model_card

    data = collect(config, run_id)
    directory = report_dir(config, data.run.run_id)
    fileio.makedirs(directory)
    path = posixpath.join(directory, REPORT_FILE)
    with fileio.open(path, "w") as f:
        f.write(render(data))
    model_card.write_model_cards(data, directory)
    return path


def report_after_run(config: PipelineConfig, stream: TextIO, run_id: Optional[str] = None) -> Optional[str]:
    """`write_report` for `run_id` (default: the latest run), printing its path; a failure is one
    log line, never raised."""
    try:
        path = write_report(config, run_id)
    except Exception as e:  # noqa: BLE001 - a report must never change a run's outcome
        logging.warning("The run report was not written: %s", e)
        stream.write(f"Report: not written ({type(e).__name__}: {e})\n")
        return None
    stream.write(f"Report: {path}\n")
    return path

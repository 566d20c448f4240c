"""The end-of-run summary, read back from ML Metadata.

`summarize` returns a `RunSummary` (tests assert on it); `format_summary` turns
it into the text a user sees after `make run`. Everything comes from the store
and the artifacts it points to, so the summary is the same whichever
orchestrator ran the pipeline.
"""

import contextlib
import dataclasses
import logging
import os
from typing import Dict, Iterator, List, Optional, Tuple

from pipeline import mlmd
from pipeline.components.anomalies_gate import Anomaly, read_anomalies
from pipeline.config import PipelineConfig

ACCURACY = "sparse_categorical_accuracy"


@dataclasses.dataclass
class RunSummary:
    run_id: str
    nodes: List[mlmd.NodeExecution]
    anomalies: List[Anomaly]
    # slice name ("Overall", "island:Biscoe", ...) -> metric name -> value
    metrics: Dict[str, Dict[str, float]]
    blessed: Optional[bool]
    blessing_reasons: List[str]
    pushed_version: Optional[str]
    pushed_path: Optional[str]
    # True when the blessed model was already served and not copied again.
    already_serving: bool = False
    # True when this run's Pusher was cached and the version's folder is gone (deleted after the
    # run that pushed it): a cached Pusher does not copy it again, so nothing serves it.
    pushed_missing: bool = False
    # Label class names by class id, from Transform's label vocabulary.
    class_names: List[str] = dataclasses.field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return bool(self.nodes) and all(n.state in ("COMPLETE", "CACHED") for n in self.nodes)

    def node(self, node_id: str) -> Optional[mlmd.NodeExecution]:
        return next((n for n in self.nodes if n.node_id == node_id), None)


def summarize(config: PipelineConfig, run_id: Optional[str] = None) -> Optional[RunSummary]:
    """The summary of run `run_id` (default: the latest), or None if there is none."""
    from tfx.dsl.io import fileio

    store = mlmd.open_store(config)
    ids = mlmd.run_ids(store, config.pipeline_name)
    if not ids:
        return None
    run_id = run_id or ids[-1]
    nodes = mlmd.run_executions(store, config.pipeline_name, run_id)
    summary = RunSummary(run_id, nodes, [], {}, None, [], None, None)
    validator = summary.node("ExampleValidator")
    if validator and validator.outputs.get("anomalies"):
        summary.anomalies = read_anomalies(validator.outputs["anomalies"][0].uri)
    evaluator = summary.node("Evaluator")
    if evaluator and evaluator.outputs.get("evaluation"):
        summary.metrics = read_metrics(evaluator.outputs["evaluation"][0].uri)
        summary.blessing_reasons = read_validation(evaluator.outputs["evaluation"][0].uri)
    if evaluator and evaluator.outputs.get("blessing"):
        blessing = evaluator.outputs["blessing"][0]
        summary.blessed = blessing.custom_properties["blessed"].int_value == 1
    pusher = summary.node("Pusher")
    if pusher and pusher.outputs.get("pushed_model"):
        pushed = pusher.outputs["pushed_model"][0].custom_properties
        if pushed.get("pushed") and pushed["pushed"].int_value == 1:
            summary.pushed_version = pushed["pushed_version"].string_value
            summary.pushed_path = pushed["pushed_destination"].string_value
            # A cached Pusher copied nothing in this run: an earlier run pushed this model.
            summary.already_serving = pusher.state == "CACHED" or (
                pushed.get("already_serving") is not None and pushed["already_serving"].int_value == 1)
            # Only a cached Pusher's: a run that copied the version did push it, even if a later
            # clean-up removed it, and its record must keep saying so.
            summary.pushed_missing = pusher.state == "CACHED" and not fileio.exists(summary.pushed_path)
    transform = summary.node("Transform")
    if transform and transform.outputs.get("transform_graph"):
        summary.class_names = read_class_names(transform.outputs["transform_graph"][0].uri)
    return summary


def read_class_names(transform_graph_uri: str) -> List[str]:
    """Label class names in class-id order, from Transform's label vocabulary file."""
    from tfx.dsl.io import fileio

    from models import features

    path = os.path.join(transform_graph_uri, "transform_fn", "assets", features.LABEL_VOCABULARY)
    if not fileio.exists(path):
        return []
    with fileio.open(path, "r") as f:
        return [line.rstrip("\n") for line in f.read().splitlines()]


@contextlib.contextmanager
def tensorflow_warnings_quieted() -> Iterator[None]:
    """TensorFlow's Python logger at ERROR for the block.

    TFMA's readers call `tf_record_iterator`, whose deprecation warning (five lines about
    eager execution) a user of `tfxt runs` or the report can do nothing about.
    """
    logger = logging.getLogger("tensorflow")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def read_metrics(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
    """TFMA metrics per slice, keyed by a readable slice name."""
    import tensorflow_model_analysis as tfma

    result: Dict[str, Dict[str, float]] = {}
    with tensorflow_warnings_quieted():
        loaded = list(tfma.load_metrics(evaluation_uri))
    for metrics_for_slice in loaded:
        name = slice_name(metrics_for_slice.slice_key)
        values = result.setdefault(name, {})
        for kv in metrics_for_slice.metric_keys_and_values:
            # With a baseline, TFMA also reports the baseline model's metrics; skip them.
            if kv.key.is_diff or kv.key.model_name not in ("", "candidate") \
                    or not kv.value.HasField("double_value"):
                continue
            metric = kv.key.name
            if kv.key.sub_key.HasField("class_id"):
                metric = f"{metric}/class_{kv.key.sub_key.class_id.value}"
            values[metric] = kv.value.double_value.value
    return result


def read_validation(evaluation_uri: str) -> List[str]:
    """Why TFMA's validation failed, one line per failed threshold (empty if it passed)."""
    import tensorflow_model_analysis as tfma
    from tfx.dsl.io import fileio

    if not any(name.startswith("validations") for name in fileio.listdir(evaluation_uri)):
        return []
    with tensorflow_warnings_quieted():
        return validation_reasons(tfma.load_validation_result(evaluation_uri))


def validation_reasons(result) -> List[str]:
    """One line per failed threshold of a TFMA ValidationResult: slice, metric, value, threshold."""
    reasons = []
    for per_slice in result.metric_validations_per_slice:
        where = slice_name(per_slice.slice_key)
        for failure in per_slice.failures:
            key = failure.metric_key
            reasons.append(f"{where}: {key.name}"
                           f"{' change vs baseline' if key.is_diff else ''}"
                           f" = {failure.metric_value.double_value.value:.4f}, "
                           f"{_threshold_text(failure.metric_threshold)}"
                           + (f" ({failure.message.strip()})" if failure.message.strip() else ""))
    return reasons


def _threshold_text(threshold) -> str:
    """`needs >= 0.9`, `needs <= 1.0`, or `needs >= -0.02 (at most 0.02 drop)`."""
    parts = []
    if threshold.HasField("value_threshold"):
        bounds = threshold.value_threshold
        if bounds.HasField("lower_bound"):
            parts.append(f"needs >= {bounds.lower_bound.value:g}")
        if bounds.HasField("upper_bound"):
            parts.append(f"needs <= {bounds.upper_bound.value:g}")
    if threshold.HasField("change_threshold") and threshold.change_threshold.HasField("absolute"):
        limit = threshold.change_threshold.absolute.value
        parts.append(f"needs >= {limit:g} (a drop of at most {abs(limit):g})" if limit <= 0
                     else f"needs >= {limit:g}")
    return " and ".join(parts) or "fails its threshold"


def slice_name(slice_key) -> str:
    """A readable slice name: \"Overall\", \"island:Biscoe\", ..."""
    parts = []
    for single in slice_key.single_slice_keys:
        value = single.bytes_value.decode() if single.HasField("bytes_value") else (
            single.int64_value if single.HasField("int64_value") else single.float_value)
        parts.append(f"{single.column}:{value}")
    return ", ".join(parts) or "Overall"


def format_summary(summary: RunSummary, config: Optional[PipelineConfig] = None) -> str:
    """The human-readable summary printed at the end of a run."""
    lines = [f"Run {summary.run_id}", "", f"  {'component':<34} {'status':<9} {'seconds':>8}"]
    for node in summary.nodes:
        lines.append(f"  {node.node_id:<34} {node.state:<9} {node.seconds:>8.1f}")
    total = sum(n.seconds for n in summary.nodes)
    lines.append(f"  {'total':<34} {'':<9} {total:>8.1f}")
    lines.append("")
    if summary.anomalies:
        lines.append(f"Anomalies: {len(summary.anomalies)}")
        lines += [f"  split '{a.split}', column '{a.column}': {a.description}" for a in summary.anomalies]
    elif summary.node("ExampleValidator") is None or summary.node("ExampleValidator").state == "FAILED":
        lines.append("Anomalies: not checked (the run stopped before ExampleValidator)")
    elif summary.node("AnomaliesGate") is not None and summary.node("AnomaliesGate").state == "FAILED":
        lines.append("Anomalies: none against the schema; the data gate stopped the run (below)")
    else:
        lines.append("Anomalies: none")
    if summary.metrics:
        lines.append("")
        lines.append("Evaluation (eval split):")
        for slice_name, values in _ordered_slices(summary.metrics):
            accuracy = values.get(ACCURACY)
            count = values.get("example_count")
            lines.append(f"  {slice_name:<28} accuracy {accuracy:.3f}  examples {count:.0f}"
                         if accuracy is not None and count is not None else f"  {slice_name}")
        per_class = _per_class(summary.metrics.get("Overall", {}))
        for class_id, (precision, recall) in per_class.items():
            name = (summary.class_names[class_id] if class_id < len(summary.class_names)
                    else f"class {class_id}")
            lines.append(f"  {name:<28} precision {precision:.3f}  recall {recall:.3f}")
    lines.append("")
    if summary.blessed is None:
        lines.append("Blessed: not evaluated (the run stopped before the Evaluator)")
    elif summary.blessed:
        why = ""
        if config:
            gates = config.thresholds
            slices = (f"; every slice of {gates.slice_min_examples}+ examples >= {gates.slice_min_accuracy}"
                      if gates.slice_min_accuracy else "")
            why = (f" (overall accuracy >= {gates.min_accuracy} and no drop over "
                   f"{gates.max_accuracy_drop} against the baseline{slices})")
        lines.append(f"Blessed: yes{why}")
    else:
        lines.append("Blessed: no")
        lines += [f"  {reason}" for reason in summary.blessing_reasons]
    if summary.pushed_version and summary.pushed_missing:
        lines.append(f"Pushed: no; version {summary.pushed_version}, which an earlier run pushed, is no "
                     f"longer in {os.path.dirname(summary.pushed_path)}, and the cached Pusher does not "
                     "copy it again. Push it again with: tfxt run --force --set enable_cache=false")
    elif summary.pushed_version and summary.already_serving:
        lines.append(f"Pushed: not again; this model is already served as version "
                     f"{summary.pushed_version} ({summary.pushed_path})")
    elif summary.pushed_version:
        lines.append(f"Pushed: version {summary.pushed_version} to {summary.pushed_path}")
    else:
        lines.append("Pushed: no (the serving directory is unchanged)")
    lines += edge_lines(summary)
    return "\n".join(lines)


def _ordered_slices(metrics: Dict[str, Dict[str, float]]) -> List[Tuple[str, Dict[str, float]]]:
    return sorted(metrics.items(), key=lambda item: (item[0] != "Overall", item[0]))


def _per_class(values: Dict[str, float]) -> Dict[int, Tuple[float, float]]:
    result = {}
    for name, value in values.items():
        if name.startswith("precision/class_"):
            class_id = int(name.rsplit("_", 1)[1])
            result[class_id] = (value, values.get(f"recall/class_{class_id}", float("nan")))
    return dict(sorted(result.items()))


def edge_lines(summary: RunSummary) -> List[str]:
    """The EdgeExport component's edge blessing (edge/parity.py), if it ran in this run."""
    from edge.parity import format_blessing, read_blessing

    node = summary.node("EdgeExport")
    if node is None or not node.outputs.get("edge_model"):
        return []
    uri = node.outputs["edge_model"][0].uri
    return format_blessing(read_blessing(uri), uri)

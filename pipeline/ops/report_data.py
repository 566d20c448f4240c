"""Everything the run report and the model card show, read from ML Metadata and the artifacts.

`collect(config, run_id)` returns a `ReportData`; `pipeline.ops.report` turns it
into the HTML page and `pipeline.ops.model_card` into the model card. Every
field may be empty: a run that failed or was stopped early has only what its
finished components wrote, and the page shows what exists. Artifacts are read
through `tfx.dsl.io.fileio`, so a `gs://` pipeline root works as a local one.
"""

import dataclasses
import json
import posixpath
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

from pipeline import mlmd
from pipeline.components.anomalies_gate import Anomaly
from pipeline.config import PipelineConfig
from pipeline.ops import summary as run_summary
from pipeline.ops import tracking

# At most this many past runs in the history plot (each costs one read of its metrics).
HISTORY_RUNS = 50


@dataclasses.dataclass
class FeatureStatistics:
    """One feature of one split, from TFDV's statistics."""

    name: str
    kind: str  # "numeric" or "categorical"
    count: int
    missing: int
    # numeric: mean, std_dev, min, median, max; categorical: unique
    values: Dict[str, float]
    # numeric: (low, high, count) buckets; categorical: (value, count) top values
    histogram: List[tuple]


@dataclasses.dataclass
class HistoryPoint:
    """One past run in the metric history."""

    run_id: str
    started: str
    spans: List[int]
    accuracy: Optional[float]
    blessed: Optional[bool]
    pushed_version: Optional[str]
    # The run copied a new version into the serving directory (not reused, not already served).
    new_push: bool


@dataclasses.dataclass
class ReportData:
    """One run, as the report shows it."""

    pipeline_name: str
    run: tracking.TrackedRun
    summary: run_summary.RunSummary
    statistics: Dict[str, Dict[str, FeatureStatistics]] = dataclasses.field(default_factory=dict)
    anomalies: List[Anomaly] = dataclasses.field(default_factory=list)
    # TFDV's drift and skew results (ExampleValidator's anomalies), one dict per feature and kind.
    drift_skew: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    # This run's drift check of its newest span and the served model's decay (pipeline.ops.monitoring),
    # and every served model's accuracy by span: model id -> {span: accuracy}.
    drift: Optional[Any] = None
    decay: Optional[Any] = None
    decay_by_model: Dict[int, Dict[int, float]] = dataclasses.field(default_factory=dict)
    # slice -> metric -> value, for the baseline model and for candidate minus baseline.
    baseline_metrics: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    metric_diffs: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    baseline_model_id: Optional[int] = None
    # slice -> [[count of actual i predicted j]], class ids in order.
    confusion: Dict[str, List[List[float]]] = dataclasses.field(default_factory=dict)
    # The thresholds recorded in the Evaluator's eval config: metric -> {"min": .., "max_drop": ..}.
    thresholds: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    history: List[HistoryPoint] = dataclasses.field(default_factory=list)
    serving_labels: Dict[str, int] = dataclasses.field(default_factory=dict)
    edge_blessing: Optional[Dict[str, Any]] = None
    edge_readiness: Optional[Dict[str, Any]] = None
    edge_uri: Optional[str] = None
    tensorboard_logdir: Optional[str] = None
    serving_model_dir: str = ""
    rest_port: int = 8501
    grpc_port: int = 8500
    # The artifacts that made the model (tracking.lineage), and the card's prose from the config.
    lineage: List[tracking.LineageItem] = dataclasses.field(default_factory=list)
    intended_use: str = ""
    limitations: List[str] = dataclasses.field(default_factory=list)

    @property
    def class_names(self) -> List[str]:
        return self.summary.class_names


def collect(config: PipelineConfig, run_id: Optional[str] = None) -> ReportData:
    """The report's data for run `run_id` (default: the latest). Raises tracking.RunNotFoundError."""
    run = tracking.get_run(config, run_id)
    summary = run_summary.summarize(config, run.run_id)
    data = ReportData(config.pipeline_name, run, summary, serving_model_dir=config.serving_model_dir,
                      rest_port=config.serving.rest_port, grpc_port=config.serving.grpc_port,
                      intended_use=config.report.intended_use, limitations=list(config.report.limitations))
    data.lineage = tracking.lineage(config, run.run_id)
    _collect_data_section(data)
    _collect_model_section(data, tracking.open_store(config))
    data.history = _history(config)
    data.serving_labels = _serving_labels(config)
    _collect_edge(data)
    trainer = run.node("Trainer")
    if trainer and trainer.outputs.get("model_run"):
        data.tensorboard_logdir = trainer.outputs["model_run"][0].uri
    _collect_monitoring(data, config)
    return data


def _collect_data_section(data: ReportData) -> None:
    statistics_gen = data.run.node("StatisticsGen")
    if statistics_gen and statistics_gen.outputs.get("statistics"):
        data.statistics = read_statistics(statistics_gen.outputs["statistics"][0].uri)
    data.anomalies = data.summary.anomalies
    validator = data.run.node("ExampleValidator")
    if validator and validator.outputs.get("anomalies"):
        data.drift_skew = read_drift_skew(validator.outputs["anomalies"][0].uri)


def _collect_model_section(data: ReportData, store) -> None:
    evaluator = data.run.node("Evaluator")
    if evaluator is None:
        return
    data.thresholds = read_thresholds(evaluator.execution)
    if evaluator.outputs.get("evaluation"):
        uri = evaluator.outputs["evaluation"][0].uri
        data.baseline_metrics, data.metric_diffs = read_baseline_metrics(uri)
        data.confusion = read_confusion_matrices(uri)
    baseline = mlmd.artifacts_by_key(store, evaluator.execution, (metadata_store_pb2.Event.INPUT,))
    baseline = baseline.get("baseline_model") or []
    data.baseline_model_id = baseline[0].id if baseline else None


def split_dirs(uri: str) -> Dict[str, str]:
    """Split name -> folder, for an artifact written as `<uri>/Split-<name>/`."""
    from tfx.dsl.io import fileio

    if not fileio.isdir(uri):
        return {}
    result = {}
    for entry in sorted(fileio.listdir(uri)):
        entry = entry.rstrip("/")
        if entry.startswith("Split-"):
            result[entry[len("Split-"):]] = posixpath.join(uri, entry)
    return result


def _split_protos(uri: str, file_name: str, proto_class) -> Iterator[Tuple[str, Any]]:
    """(split, parsed `file_name`) for each Split-* folder of an artifact that holds the file."""
    from tfx.dsl.io import fileio

    for split, folder in split_dirs(uri).items():
        path = posixpath.join(folder, file_name)
        if fileio.exists(path):
            proto = proto_class()
            with fileio.open(path, "rb") as f:
                proto.ParseFromString(f.read())
            yield split, proto


def read_statistics(statistics_uri: str) -> Dict[str, Dict[str, FeatureStatistics]]:
    """Per split, per feature: counts, summary values and a histogram, from FeatureStats.pb."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    result = {}
    for split, stats in _split_protos(statistics_uri, "FeatureStats.pb",
                                      statistics_pb2.DatasetFeatureStatisticsList):
        if stats.datasets:
            dataset = stats.datasets[0]
            result[split] = {s.name: s for s in (
                _feature_statistics(feature, dataset.num_examples) for feature in dataset.features)}
    # train first, then the other splits by name.
    return dict(sorted(result.items(), key=lambda item: (item[0] != "train", item[0])))


def _feature_statistics(feature, num_examples: int) -> FeatureStatistics:
    name = feature.path.step[-1] if feature.path.step else feature.name
    if feature.HasField("num_stats"):
        stats = feature.num_stats
        histogram = next((h for h in stats.histograms if h.type == h.STANDARD), None)
        return FeatureStatistics(
            name, "numeric", num_examples - stats.common_stats.num_missing, stats.common_stats.num_missing,
            {"mean": stats.mean, "std_dev": stats.std_dev, "min": stats.min, "median": stats.median,
             "max": stats.max},
            [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets] if histogram else [])
    stats = feature.string_stats
    return FeatureStatistics(
        name, "categorical", num_examples - stats.common_stats.num_missing, stats.common_stats.num_missing,
        {"unique": stats.unique}, [(v.value, v.frequency) for v in stats.top_values])


def read_drift_skew(anomalies_uri: str) -> List[Dict[str, Any]]:
    """TFDV's drift/skew measurements in ExampleValidator's anomalies (empty unless configured)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    rows = []
    for split, anomalies in _split_protos(anomalies_uri, "SchemaDiff.pb", anomalies_pb2.Anomalies):
        for info in anomalies.drift_skew_info:
            feature = ".".join(info.path.step)
            for kind, measurements in (("drift", info.drift_measurements),
                                       ("skew", info.skew_measurements)):
                for m in measurements:
                    rows.append({"split": split, "feature": feature, "kind": kind,
                                 "measure": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
                                 "value": m.value, "threshold": m.threshold})
    return rows


def read_thresholds(evaluator_execution) -> Dict[str, Dict[str, float]]:
    """The value and change thresholds of the eval config the Evaluator ran with, per metric.

    The messages come from TFMA's config_pb2: TFMA 0.52 (TFX 1.21) no longer exports them at
    the top level.
    """
    from google.protobuf import json_format
    from tensorflow_model_analysis.proto import config_pb2 as tfma_config

    properties = evaluator_execution.custom_properties
    if "eval_config" not in properties:
        return {}
    eval_config = json_format.Parse(properties["eval_config"].string_value, tfma_config.EvalConfig(),
                                    ignore_unknown_fields=True)
    result: Dict[str, Dict[str, float]] = {}
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            # The gates hold for the Overall slice (per_slice_thresholds with an empty SlicingSpec,
            # see pipeline.pipeline.eval_config); a plain `threshold` would hold for every slice.
            overall = [t.threshold for t in metric.per_slice_thresholds
                       if tfma_config.SlicingSpec() in t.slicing_specs]
            entry = {}
            for threshold in [metric.threshold] + overall:
                if threshold.value_threshold.HasField("lower_bound"):
                    entry["min"] = threshold.value_threshold.lower_bound.value
                if threshold.change_threshold.HasField("absolute"):
                    entry["max_drop"] = -threshold.change_threshold.absolute.value
            if entry:
                result[metric.class_name] = entry
    return result


def read_baseline_metrics(evaluation_uri: str):
    """(baseline metrics, candidate-minus-baseline diffs), slice -> metric -> value."""
    import tensorflow_model_analysis as tfma

    baseline: Dict[str, Dict[str, float]] = {}
    diffs: Dict[str, Dict[str, float]] = {}
    with run_summary.tensorflow_warnings_quieted():
        loaded = list(tfma.load_metrics(evaluation_uri))
    for metrics_for_slice in loaded:
        name = run_summary.slice_name(metrics_for_slice.slice_key)
        for kv in metrics_for_slice.metric_keys_and_values:
            if not kv.value.HasField("double_value") or kv.key.sub_key.ByteSize():
                continue
            if kv.key.is_diff:
                diffs.setdefault(name, {})[kv.key.name] = kv.value.double_value.value
            elif kv.key.model_name == "baseline":
                baseline.setdefault(name, {})[kv.key.name] = kv.value.double_value.value
    return baseline, diffs


def read_confusion_matrices(evaluation_uri: str) -> Dict[str, List[List[float]]]:
    """TFMA's MultiClassConfusionMatrixPlot per slice, as a square matrix [actual][predicted]."""
    import tensorflow_model_analysis as tfma

    result = {}
    try:
        with run_summary.tensorflow_warnings_quieted():
            plots = list(tfma.load_plots(evaluation_uri))
    except Exception:  # noqa: BLE001 - an evaluation without plots (older runs) has no matrix
        return {}
    for plots_for_slice in plots:
        for kv in plots_for_slice.plot_keys_and_values:
            if kv.key.model_name not in ("", "candidate") or not kv.value.HasField(
                    "multi_class_confusion_matrix_at_thresholds"):
                continue
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            if matrices:
                result[run_summary.slice_name(plots_for_slice.slice_key)] = _square(matrices[0].entries)
    return result


def _square(entries) -> List[List[float]]:
    size = 1 + max([max(e.actual_class_id, e.predicted_class_id) for e in entries] or [-1])
    matrix = [[0.0] * size for _ in range(size)]
    for e in entries:
        if e.actual_class_id >= 0 and e.predicted_class_id >= 0:
            matrix[e.actual_class_id][e.predicted_class_id] += e.num_weighted_examples
    return matrix


def _history(config: PipelineConfig) -> List[HistoryPoint]:
    points = []
    seen_versions = set()
    for run in tracking.list_runs(config)[-HISTORY_RUNS:]:
        pusher = run.node("Pusher")
        already = False
        if pusher and pusher.outputs.get("pushed_model"):
            properties = pusher.outputs["pushed_model"][0].custom_properties
            already = "already_serving" in properties and properties["already_serving"].int_value == 1
        new_push = bool(run.pushed_version) and not run.pushed_reused and not already \
            and run.pushed_version not in seen_versions
        if run.pushed_version:
            seen_versions.add(run.pushed_version)
        points.append(HistoryPoint(run.run_id, run.started.strftime("%Y-%m-%d %H:%M:%S"), run.spans,
                                   run.metrics.get(run_summary.ACCURACY), run.blessed,
                                   run.pushed_version, new_push))
    return points


def _serving_labels(config: PipelineConfig) -> Dict[str, int]:
    from serving.server_files import serving_paths
    from serving.versions import current_labels

    try:
        return current_labels(serving_paths(config))
    except Exception:  # noqa: BLE001 - a broken models.config is the serving CLI's to report
        return {}


def _collect_edge(data: ReportData) -> None:
    from tfx.dsl.io import fileio

    node = data.run.node("EdgeExport")
    if node is None or not node.outputs.get("edge_model"):
        return
    data.edge_uri = node.outputs["edge_model"][0].uri
    for name, attribute in (("edge_blessing.json", "edge_blessing"),
                            ("edgetpu_readiness.json", "edge_readiness")):
        path = posixpath.join(data.edge_uri, name)
        if fileio.exists(path):
            with fileio.open(path, "r") as f:
                setattr(data, attribute, json.loads(f.read()))


def _collect_monitoring(data: ReportData, config: PipelineConfig) -> None:
    from pipeline.ops import monitoring

    drift = monitoring.drift_results(config, data.run.run_id)
    data.drift = drift[0] if drift else None
    records = monitoring.decay_records(config)
    data.decay = next((r for r in records if r.run_id == data.run.run_id), None)
    data.decay_by_model = monitoring.accuracy_by_model(records)


def per_class(data: ReportData) -> List[Dict[str, Any]]:
    """Precision and recall per class, from the Overall slice's binarized metrics."""
    overall = data.summary.metrics.get("Overall", {})
    rows = []
    for class_id, name in enumerate(data.class_names):
        precision = overall.get(f"precision/class_{class_id}")
        recall = overall.get(f"recall/class_{class_id}")
        if precision is not None or recall is not None:
            rows.append({"id": class_id, "name": name, "precision": precision, "recall": recall})
    return rows

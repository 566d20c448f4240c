"""Monitoring results read back from ML Metadata, and training/serving skew.

The Python API for what the pipeline's monitoring nodes recorded
(`pipeline.components.drift_gate`, `pipeline.components.model_decay`):

- `drift_results(config)`: per run, the newest and previous span, the action
  and every compared feature (measure, value, threshold, drifted or not).
- `decay_records(config)`: per run, the served model's id and its accuracy on
  the newest span and the span before it, the drop and the retrain trigger.
- `accuracy_by_model(records)`: model id -> {span: accuracy}, the latest
  measurement of each (model, span).

And skew, for `tfxt monitor skew`: `check_skew(config, rows)` compares the
TFDV statistics of serving rows with the training statistics of the served
version (`training_statistics`), with TFDV's skew comparators.

Called by `runners.cli.monitor`, `runners.cli.runs` and the tests; the
rollback and rehearsal code read decay and drift through the same functions.
"""

import dataclasses
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from pipeline import mlmd
from pipeline.components import drift_gate, model_decay
from pipeline.components.drift_gate import Drift
from pipeline.config import PipelineConfig
from pipeline.ops.tracking import MetadataStoreError, open_store

__all__ = ["MetadataStoreError", "DriftResult", "DecayRecord", "SkewReport", "drift_results",
           "decay_records", "accuracy_by_model", "training_statistics", "check_skew"]


class MonitoringError(Exception):
    """A monitoring check cannot run; the message says why and what to do."""


@dataclasses.dataclass
class DriftResult:
    """One run's comparison of its newest span with the span before."""

    run_id: str
    newest_span: int
    previous_span: int
    action: str  # "stop" or "warn"
    drifts: List[Drift]  # every compared feature

    @property
    def drifted(self) -> List[Drift]:
        return [d for d in self.drifts if d.drifted]


@dataclasses.dataclass
class DecayRecord:
    """The served model's accuracy on a run's newest span and the span before it."""

    run_id: str
    evaluated: bool  # False when there was no blessed model yet
    model_id: Optional[int]
    model_uri: str
    newest_span: int
    newest_accuracy: Optional[float]
    previous_span: int
    previous_accuracy: Optional[float]
    accuracy_drop: Optional[float]
    decay_threshold: float
    retrain_trigger: bool
    reason: str


def _runs(config: PipelineConfig):
    store = open_store(config)
    if store is None:
        return None, []
    return store, mlmd.run_ids(store, config.pipeline_name)


def drift_results(config: PipelineConfig, run_id: Optional[str] = None) -> List[DriftResult]:
    """Drift results of every run (or one run) that compared two spans, oldest first."""
    store, run_ids = _runs(config)
    results = []
    # A cached run reuses the earlier run's artifact: it measured nothing new, so it is listed once.
    seen = set()
    for rid in ([run_id] if run_id else run_ids) if store is not None else []:
        nodes = {n.node_id: n for n in mlmd.run_executions(store, config.pipeline_name, rid)}
        gate, validator = nodes.get(drift_gate.NODE_ID), nodes.get(drift_gate.VALIDATOR_NODE_ID)
        if gate is None or validator is None or not validator.outputs.get("anomalies") \
                or validator.outputs["anomalies"][0].id in seen:
            continue
        seen.add(validator.outputs["anomalies"][0].id)
        properties = gate.execution.custom_properties
        results.append(DriftResult(
            rid, properties["newest_span"].int_value, properties["previous_span"].int_value,
            properties["action"].string_value,
            drift_gate.read_drift(validator.outputs["anomalies"][0].uri)))
    return results


def decay_records(config: PipelineConfig) -> List[DecayRecord]:
    """The ModelDecay record of every run that had two spans, oldest first."""
    store, run_ids = _runs(config)
    records = []
    seen = set()  # a cached run reuses the earlier run's record: listed once
    for rid in run_ids:
        nodes = {n.node_id: n for n in mlmd.run_executions(store, config.pipeline_name, rid)}
        decay = nodes.get(model_decay.NODE_ID)
        if decay is None or not decay.outputs.get("accuracy") or decay.outputs["accuracy"][0].id in seen:
            continue
        seen.add(decay.outputs["accuracy"][0].id)
        records.append(_decay_record(rid, decay.outputs["accuracy"][0].custom_properties))
    return records


def _decay_record(run_id: str, properties) -> DecayRecord:
    def number(name: str) -> Optional[float]:
        return properties[name].double_value if name in properties else None

    def integer(name: str, default: int = 0) -> int:
        return properties[name].int_value if name in properties else default

    return DecayRecord(
        run_id=run_id, evaluated=integer("evaluated") == 1,
        model_id=integer("model_id") if "model_id" in properties else None,
        model_uri=properties["model_uri"].string_value if "model_uri" in properties else "",
        newest_span=integer("newest_span"), newest_accuracy=number("newest_accuracy"),
        previous_span=integer("previous_span"), previous_accuracy=number("previous_accuracy"),
        accuracy_drop=number("accuracy_drop"), decay_threshold=number("decay_threshold") or 0.0,
        retrain_trigger=integer("retrain_trigger") == 1, reason=properties["reason"].string_value)


def accuracy_by_model(records: Sequence[DecayRecord]) -> Dict[int, Dict[int, float]]:
    """Model id -> {span: accuracy}, from evaluated records; a later record of a (model, span) wins."""
    table: Dict[int, Dict[int, float]] = {}
    for record in records:
        if not record.evaluated:
            continue
        spans = table.setdefault(record.model_id, {})
        spans[record.previous_span] = record.previous_accuracy
        spans[record.newest_span] = record.newest_accuracy
    return table


def decay_cells(records: Sequence[DecayRecord]) -> Dict[str, str]:
    """Run id -> a short text of the served model's accuracy on the run's two spans, for `tfxt runs list`."""
    cells = {}
    for r in records:
        cells[r.run_id] = (
            f"#{r.model_id} {r.previous_span}: {r.previous_accuracy:.3f} -> {r.newest_span}: "
            f"{r.newest_accuracy:.3f}" + (" RETRAIN" if r.retrain_trigger else "")
            if r.evaluated else "none yet")
    return cells


def format_decay(records: Sequence[DecayRecord]) -> str:
    """Each served model's accuracy span by span, and the retrain triggers (`tfxt runs models`)."""
    table = accuracy_by_model(records)
    if not table:
        return "Served model accuracy by span: none recorded yet (it needs a blessed model and two spans)."
    lines = ["Served model accuracy by span (ModelDecay, before retraining):"]
    for model_id, spans in sorted(table.items()):
        lines.append(f"  model #{model_id:<5} " + "  ".join(
            f"{span}: {accuracy:.3f}" for span, accuracy in sorted(spans.items())))
    lines += [f"  retrain trigger in run {r.run_id}: model #{r.model_id} {r.reason}"
              for r in records if r.retrain_trigger]
    return "\n".join(lines)


def format_drift(results: Sequence[DriftResult]) -> str:
    """One block per run: spans, action, and each feature's measure, value and threshold."""
    if not results:
        return "No drift checks recorded (they need two spans or more)."
    lines = []
    for result in results:
        found = ", ".join(d.feature for d in result.drifted) or "none"
        lines.append(f"Run {result.run_id}: span {result.newest_span} against span "
                     f"{result.previous_span} (action {result.action}); drift: {found}")
        lines += [f"  {'DRIFT ' if d.drifted else '      '}{d.describe()}" for d in result.drifts]
    return "\n".join(lines)


# --- Training/serving skew -------------------------------------------------------------


@dataclasses.dataclass
class SkewReport:
    """Serving rows compared with the served version's training statistics."""

    version: int
    run_id: str  # the run that pushed the version
    rows: int
    skews: List[Drift]  # measure, value, threshold per feature

    @property
    def skewed(self) -> List[Drift]:
        return [s for s in self.skews if s.drifted]


def served_version(config: PipelineConfig) -> Optional[int]:
    """The `stable` version, or the newest ready one (what TF Serving serves)."""
    from serving import server_files, versions

    return versions.stable_version(server_files.serving_paths(config))


def training_statistics(config: PipelineConfig, version: int):
    """(run id, train-split statistics) of the run that pushed `version`.

    Raises MonitoringError when no run in the store pushed that version.
    """
    from tensorflow_data_validation.utils import stats_util

    store, run_ids = _runs(config)
    for rid in reversed(run_ids):
        nodes = {n.node_id: n for n in mlmd.run_executions(store, config.pipeline_name, rid)}
        pusher, statistics = nodes.get("Pusher"), nodes.get("StatisticsGen")
        pushed = pusher.outputs.get("pushed_model", []) if pusher else []
        if (pushed and pushed[0].custom_properties["pushed_version"].string_value == str(version)
                and statistics and statistics.outputs.get("statistics")):
            path = os.path.join(statistics.outputs["statistics"][0].uri, "Split-train",
                                "FeatureStats.pb")
            return rid, stats_util.load_stats_binary(path)
    raise MonitoringError(f"No run in the metadata store pushed version {version} of "
                          f"'{config.pipeline_name}', so its training statistics are unknown.")


def serving_statistics(rows: Sequence[Mapping[str, Any]], schema):
    """TFDV statistics of raw serving rows, each feature of its schema type.

    None, NaN, "" and `features.MISSING_INT` (serving_raw's missing INT) are missing values.
    """
    import pandas as pd
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    from models import features

    columns = {}
    for name in features.feature_keys():
        values = [_missing_to_none(row.get(name)) for row in rows]
        kind = tfdv.get_feature(schema, name).type
        if kind == schema_pb2.BYTES:
            columns[name] = pd.Series([None if v is None else str(v) for v in values], dtype=object)
        else:
            numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
            columns[name] = numbers.round().astype("Int64") if kind == schema_pb2.INT else numbers
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame(columns))


def _missing_to_none(value: Any) -> Any:
    from models import features

    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if value == features.MISSING_INT:
        return None
    if isinstance(value, list):  # a [1]-shaped column value
        return _missing_to_none(value[0]) if len(value) == 1 else None
    return value


def check_skew(config: PipelineConfig, rows: Sequence[Mapping[str, Any]],
               version: Optional[int] = None) -> SkewReport:
    """Per-feature skew of `rows` against the training statistics of `version` (default: served).

    Numeric features are compared by Jensen-Shannon divergence, categorical ones
    by L-infinity distance (TFDV skew comparators), with the thresholds of
    `config.monitoring`. Raises MonitoringError when there are no rows or no
    served version.
    """
    import tensorflow_data_validation as tfdv

    if not rows:
        raise MonitoringError("No serving rows to check: the request log holds no logged rows.")
    version = version if version is not None else served_version(config)
    if version is None:
        raise MonitoringError(f"No version is served from {config.serving_model_dir}; run the "
                              "pipeline until it pushes a model, or pass --version.")
    run_id, training = training_statistics(config, version)
    schema = tfdv.load_schema_text(config.schema_path)
    serving = serving_statistics(rows, schema)
    schema = tfdv.infer_schema(training)
    monitoring = config.monitoring
    thresholds = drift_gate.feature_thresholds(dataclasses.replace(
        monitoring, numeric_drift_threshold=monitoring.numeric_skew_threshold,
        categorical_drift_threshold=monitoring.categorical_skew_threshold, feature_thresholds={}))
    from models import features

    for name in features.feature_keys():
        measure, threshold = thresholds[name]
        tfdv.get_feature(schema, name).skew_comparator.CopyFrom(
            drift_gate.feature_comparator(measure, threshold))
    anomalies = tfdv.validate_statistics(training, schema, serving_statistics=serving)
    skews = {}
    for info in anomalies.drift_skew_info:
        for measurement in info.skew_measurements:
            name = ".".join(info.path.step)
            measure = (drift_gate.JSD if measurement.type == measurement.JENSEN_SHANNON_DIVERGENCE
                       else drift_gate.L_INFINITY)
            skews[name] = Drift(name, measure, measurement.value, measurement.threshold)
    for name in features.feature_keys():
        skews.setdefault(name, Drift(name, "not comparable", float("nan"), float("nan")))
    return SkewReport(version, run_id, len(rows), [skews[n] for n in features.feature_keys()])


def format_skew(report: SkewReport, malformed: int = 0) -> str:
    """The skew report: one line per feature, and what was read."""
    lines = [f"Serving rows: {report.rows}" + (f" ({malformed} malformed log lines skipped)"
                                               if malformed else ""),
             f"Against version {report.version} (training statistics of run {report.run_id}):"]
    lines += [f"  {'SKEW ' if s.drifted else '     '}{s.describe()}" for s in report.skews]
    found = ", ".join(s.feature for s in report.skewed)
    lines.append(f"Skew found in: {found}" if found else "No skew past the thresholds.")
    return "\n".join(lines)

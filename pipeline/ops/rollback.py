"""Rollback on decay: when the served model does worse on a new labelled span than the model it
replaced, move `stable` back, and record every check in ML Metadata.

The watcher (`pipeline.ops.watch`, via `check_span`) calls this before it retrains on a new span;
the rehearsal reads the records back with `rollback_records`.

- The served model is the `stable` version (`serving.versions.stable_version`); the model it
  replaced is the newest blessed, present version older than it, which is exactly where
  `serving.versions.rollback` moves `stable`, so a rollback never lands on a version that is
  missing or was not blessed.
- Both are scored on the new span's labelled rows (`span_accuracy`); a drop beyond
  `lifecycle.rollback_accuracy_drop` rolls back when `lifecycle.auto_rollback` is on.
- A span with more blank values in a column than the config's validation section allows
  (`blank_columns`) never rolls back: the data gate stops that span's run, and both models are
  then scored mostly on imputed values (the default rehearsal rolled back on its blank-value
  span, from a model that was fine).
- Each check is an ML Metadata execution of type `tfxt.DecayCheck` in the pipeline's context,
  with the span, both versions and accuracies, and whether (and why not) it rolled back.
- A rollback is also recorded on the rolled-back version's Model artifact (the Trainer's output
  named by the version's blessing record), as the custom properties `rolled_back` = 1 and
  `rolled_back_span` (`mark_rolled_back`). The pipeline's resolvers
  (`pipeline.components.baseline_resolver`) then no longer take that model as the served model,
  the warm-start base or the Evaluator's baseline; without the mark, TFX's latest-blessed
  strategy would pick the model that was just rolled back.

`span_accuracy` scores a model on a span itself: the monitoring work (issue 12, items 1-3)
records the served model's accuracy per span in the pipeline; once that is on main this reads
the served model's number from there and keeps only the replaced model's scoring.
"""

import csv
import dataclasses
import glob
import os
from typing import List, Optional, Tuple

from models import features
from pipeline import mlmd
from pipeline.config import PipelineConfig

EXECUTION_TYPE = "tfxt.DecayCheck"
_PROPERTIES = {"span": "INT", "served_version": "INT", "replaced_version": "INT",
               "served_accuracy": "DOUBLE", "replaced_accuracy": "DOUBLE", "threshold": "DOUBLE",
               "rolled_back": "INT", "stable_after": "INT", "reason": "STRING"}


@dataclasses.dataclass(frozen=True)
class DecayCheck:
    """One check of the served model on a new span, as recorded in ML Metadata."""

    span: int
    served_version: int
    replaced_version: int  # 0: none
    served_accuracy: float
    replaced_accuracy: float  # -1 when there is no replaced version (ML Metadata stores no NaN)
    threshold: float
    rolled_back: bool
    stable_after: int
    reason: str


def read_span_rows(span_dir: str) -> List[dict]:
    """The labelled raw rows of a span folder's CSV files (missing values left out)."""
    rows = []
    for path in sorted(glob.glob(os.path.join(span_dir, "*.csv"))):
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows.extend({k: v for k, v in row.items() if v not in ("", None, "NA")}
                        for row in csv.DictReader(f))
    return [row for row in rows if features.LABEL_KEY in row]


def blank_columns(rows: List[dict], validation) -> List[str]:
    """Feature columns blank in a larger share of `rows` than `validation` (ValidationConfig) allows."""
    if not rows:
        return []
    found = []
    for key in features.feature_keys():
        tolerance = validation.blank_fractions.get(key, validation.max_blank_fraction)
        if sum(key not in row for row in rows) / len(rows) > tolerance:
            found.append(key)
    return found


def span_accuracy(model_dir: str, rows: List[dict]) -> float:
    """The share of `rows` whose label the model predicts, through its `serving_raw` signature."""
    import numpy as np
    import tensorflow as tf

    from serving import payloads

    if not rows:
        return float("nan")
    model = tf.saved_model.load(model_dir)
    inputs = {k: tf.constant(v) for k, v in payloads.raw_columns(rows).items()}
    predicted = model.signatures["serving_raw"](**inputs)["predicted_class"].numpy()
    labels = np.array([row[features.LABEL_KEY].encode() for row in rows])
    return float(np.mean(predicted == labels))


def served_and_replaced(config: PipelineConfig) -> Tuple[Optional[int], Optional[int]]:
    """The `stable` version and the newest blessed, present version older than it."""
    from serving import server_files, versions

    paths = server_files.serving_paths(config)
    stable = versions.stable_version(paths)
    if stable is None:
        return None, None
    earlier = [v for v in versions.blessed_versions(paths.serving_model_dir) if v < stable]
    return stable, (earlier[-1] if earlier else None)


def check_span(config: PipelineConfig, span: int, span_dir: str) -> Optional[DecayCheck]:
    """Scores the served and the replaced model on `span_dir`; rolls back if configured and worse.

    Returns the recorded check, or None when no model is served yet.
    """
    from serving import server_files, versions

    served, replaced = served_and_replaced(config)
    if served is None:
        return None
    rows = read_span_rows(span_dir)
    model_dir = config.serving_model_dir
    served_accuracy = span_accuracy(os.path.join(model_dir, str(served)), rows)
    replaced_accuracy = (span_accuracy(os.path.join(model_dir, str(replaced)), rows)
                         if replaced is not None else -1.0)
    threshold = config.lifecycle.rollback_accuracy_drop
    worse = replaced is not None and served_accuracy < replaced_accuracy - threshold
    blank = blank_columns(rows, config.validation)
    stable_after, rolled_back = served, False
    if replaced is None:
        reason = "no blessed earlier version to compare with"
    elif not worse:
        reason = f"served accuracy within {threshold:g} of version {replaced}"
    elif blank:
        reason = (f"worse than version {replaced}, but on a span whose column(s) {', '.join(blank)} are "
                  "blank past the validation section's tolerance: its accuracy decides no rollback")
    elif not config.lifecycle.auto_rollback:
        reason = "worse than the replaced version, but lifecycle.auto_rollback is off"
    else:
        try:
            stable_after = _roll_back(server_files.serving_paths(config))
            rolled_back = True
            mark_rolled_back(config, served, span)
            reason = (f"served accuracy {served_accuracy:.3f} < {replaced_accuracy:.3f} - {threshold:g} "
                      f"of version {replaced}")
        except versions.VersionError as e:
            reason = f"worse than version {replaced}, but the rollback was refused: {e}"
    check = DecayCheck(span, served, replaced or 0, served_accuracy, replaced_accuracy, threshold,
                       rolled_back, stable_after, reason)
    record(config, check)
    return check


def _roll_back(paths) -> int:
    """`serving.versions.rollback`, completed: returns the new stable version.

    When the target was not loaded, the first call makes models.config load it as `previous`
    (RollbackPending) and the second moves `stable` to it. TF Serving accepts that label move
    while the version loads when it runs with --allow_version_labels_for_unavailable_models, as
    the template's Docker and Kubernetes setups start it; the local server loads it at once.
    """
    from serving import server_files, versions

    try:
        return versions.rollback(paths)[server_files.STABLE]
    except versions.RollbackPending:
        return versions.rollback(paths)[server_files.STABLE]


def mark_rolled_back(config: PipelineConfig, version: int, span: int) -> Optional[int]:
    """Marks the Model artifact that `version` was pushed from as rolled back (module docstring).

    Returns the artifact's id, or None when the version's blessing record names no model of this
    store (a version copied in by hand), which is then logged.
    """
    import logging

    from pipeline.components.baseline_resolver import ROLLED_BACK_PROPERTY
    from serving.warmup import read_blessing

    model_id = read_blessing(os.path.join(config.serving_model_dir, str(version))).get("model_id")
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    store = mlmd.open_store(config)
    found = store.get_artifacts_by_id([int(model_id)]) if model_id else []
    if not found:
        logging.getLogger(__name__).warning(
            "Version %s names no Model artifact in ML Metadata (model_id %r); the resolvers cannot "
            "skip it.", version, model_id)
        return None
    model = found[0]
    model.custom_properties[ROLLED_BACK_PROPERTY].int_value = 1
    model.custom_properties["rolled_back_span"].int_value = span
    store.put_artifacts([model])
    return model.id


def record(config: PipelineConfig, check: DecayCheck) -> None:
    """Writes `check` as a `tfxt.DecayCheck` execution in the pipeline's ML Metadata context."""
    from ml_metadata.proto import metadata_store_pb2

    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    store = mlmd.open_store(config)
    execution_type = metadata_store_pb2.ExecutionType(name=EXECUTION_TYPE)
    for name, kind in _PROPERTIES.items():
        execution_type.properties[name] = getattr(metadata_store_pb2, kind)
    type_id = store.put_execution_type(execution_type, can_add_fields=True)
    execution = metadata_store_pb2.Execution(
        type_id=type_id, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    for name in _PROPERTIES:
        value = getattr(check, name)
        target = execution.properties[name]
        if isinstance(value, bool):
            target.int_value = int(value)
        elif isinstance(value, int):
            target.int_value = value
        elif isinstance(value, float):
            target.double_value = value
        else:
            target.string_value = value
    contexts = []
    context = store.get_context_by_type_and_name(mlmd.PIPELINE_CONTEXT, config.pipeline_name)
    if context is not None:
        contexts.append(context)
    store.put_execution(execution, artifact_and_events=[], contexts=contexts)


def rollback_records(config: PipelineConfig) -> List[DecayCheck]:
    """Every recorded check of `config`'s store, oldest first."""
    if config.metadata.backend == "sqlite" and not os.path.exists(config.metadata_path):
        return []
    store = mlmd.open_store(config)
    try:
        executions = store.get_executions_by_type(EXECUTION_TYPE)
    except Exception:  # noqa: BLE001 - MLMD raises NotFoundError when the type was never written
        return []
    checks = []
    for execution in sorted(executions, key=lambda e: e.id):
        values = {}
        for name, kind in _PROPERTIES.items():
            value = execution.properties[name]
            values[name] = {"INT": value.int_value, "DOUBLE": value.double_value,
                            "STRING": value.string_value}[kind]
        values["rolled_back"] = bool(values["rolled_back"])
        checks.append(DecayCheck(**values))
    return checks


def serve_newest(config: PipelineConfig) -> Optional[int]:
    """After a push, points `stable` at the newest blessed version, if labels are in use.

    Without a models.config TF Serving serves the newest version anyway; once a rollback wrote
    labels, `stable` would otherwise stay pinned to the old version after every later push.
    A version that was rolled back (a recorded `tfxt.DecayCheck`) is never served again.
    Returns the new stable version, or None when nothing changed.
    """
    from serving import server_files, versions

    paths = server_files.serving_paths(config)
    labels = versions.current_labels(paths)
    rolled_back = {check.served_version for check in rollback_records(config) if check.rolled_back}
    candidates = [v for v in versions.blessed_versions(paths.serving_model_dir) if v not in rolled_back]
    if server_files.STABLE not in labels or not candidates or candidates[-1] <= labels[server_files.STABLE]:
        return None
    # Canary then promote: the moves TF Serving accepts, and the old stable stays loaded as
    # `previous`, so the next rollback is one label move.
    versions.set_canary(paths, candidates[-1])
    versions.promote(paths)
    return candidates[-1]


def before_run(config: PipelineConfig, span: int) -> None:
    """The watcher's hook before it retrains on `span`: check (and maybe roll back) the served model."""
    check = check_span(config, span, os.path.join(config.data_root, f"span-{span}"))
    if check is not None:
        print(f"Span {span}: served version {check.served_version} accuracy {check.served_accuracy:.3f}"
              + (f", rolled back to {check.stable_after} ({check.reason})" if check.rolled_back else ""))

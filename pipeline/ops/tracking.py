"""Experiment tracking read from ML Metadata: run history, one run's lineage, re-running a run.

Every field comes from the store (SQLite or MySQL) or from the artifacts it
records: the config, its hash and the spans from the `RunRecord` execution
(`pipeline.components.run_record`), hyperparameters from the Trainer's execution (and the
Tuner's best hyperparameters, when a Tuner fed the Trainer), metrics from the
Evaluator's evaluation artifact, the blessing and the pushed version from their
artifacts' properties. A component that was CACHED in a run still belongs to
that run's context, with the artifacts it reused, so an unchanged second run
shows the same model and marks what it reused.

`tfxt runs list|show|rerun` (`runners.cli.runs`) is a thin layer over
`list_runs`, `lineage` and `rerun_config`.
"""

import dataclasses
import datetime
import json
import os
from typing import Any, Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

from pipeline import mlmd
from pipeline.components import run_record
from pipeline.config import PipelineConfig, load_config
from pipeline.ops import run_state

ACCURACY = "sparse_categorical_accuracy"
# The node id of `pipeline.components.run_record.RunRecord`, and what it records instead of a password.
# Defined here so that reading history does not import TFX's component machinery.


class TrackingError(Exception):
    """Run history cannot be read; the message says why and what to do."""


class RunNotFoundError(TrackingError, LookupError):
    """The run id is not in the store."""


class MetadataStoreError(TrackingError):
    """The ML Metadata store cannot be opened."""


def open_store(config: PipelineConfig):
    """The run's store, or None if the SQLite file does not exist yet (no runs)."""
    if config.metadata.backend == "sqlite" and not os.path.exists(config.metadata_path):
        return None
    try:
        return mlmd.open_store(config)
    except RuntimeError as e:  # MLMD reports connection failures as RuntimeError
        where = (config.metadata_path if config.metadata.backend == "sqlite" else
                 f"mysql://{config.metadata.user}@{config.metadata.host}:{config.metadata.port}/"
                 f"{config.metadata.database}")
        raise MetadataStoreError(f"Cannot open the ML Metadata store at {where}: {e}. "
                                 "Check the config's metadata section.") from None


@dataclasses.dataclass
class TrackedRun:
    """One pipeline run as recorded in ML Metadata."""

    run_id: str
    started: datetime.datetime
    state: str  # COMPLETE, FAILED, RUNNING (any node not finished) or INTERRUPTED
    config: Optional[Dict[str, Any]]  # None for runs made before RunRecord existed
    config_fingerprint: Optional[str]
    spans: List[int]
    hyperparameters: Dict[str, Any]
    metrics: Dict[str, float]  # the Overall slice
    blessed: Optional[bool]
    pushed_version: Optional[str]
    # The ML Metadata id of the model the Trainer output (or reused) in this run.
    model_id: Optional[int]
    # Node ids whose execution this run reused from the cache.
    cached_nodes: List[str]
    nodes: List[mlmd.NodeExecution] = dataclasses.field(repr=False, default_factory=list)

    @property
    def pushed_reused(self) -> bool:
        """Whether the pushed version was pushed by an earlier run (the Pusher was CACHED)."""
        return "Pusher" in self.cached_nodes

    def node(self, node_id: str) -> Optional[mlmd.NodeExecution]:
        return next((n for n in self.nodes if n.node_id == node_id), None)


def list_runs(config: PipelineConfig, read_metrics: bool = True) -> List[TrackedRun]:
    """Every run of `config.pipeline_name` in its metadata store, oldest first."""
    store = open_store(config)
    if store is None:
        return []
    return [_tracked_run(store, config, run_id, read_metrics)
            for run_id in mlmd.run_ids(store, config.pipeline_name)]


def get_run(config: PipelineConfig, run_id: Optional[str] = None,
            read_metrics: bool = True) -> TrackedRun:
    """One run (default: the latest). Raises RunNotFoundError if there is no such run."""
    store = open_store(config)
    ids = mlmd.run_ids(store, config.pipeline_name) if store is not None else []
    if not ids:
        raise RunNotFoundError(f"No runs of '{config.pipeline_name}' in the metadata store.")
    run_id = run_id or ids[-1]
    if run_id not in ids:
        raise RunNotFoundError(f"No run '{run_id}' of '{config.pipeline_name}'; "
                               f"`tfxt runs list` shows the run ids.")
    return _tracked_run(store, config, run_id, read_metrics)


def _tracked_run(store, config: PipelineConfig, run_id: str, read_metrics: bool) -> TrackedRun:
    context = store.get_context_by_type_and_name(mlmd.RUN_CONTEXT, run_id)
    nodes = mlmd.run_executions(store, config.pipeline_name, run_id)
    state = _run_state(context, {n.state for n in nodes})
    run = TrackedRun(
        run_id=run_id,
        started=datetime.datetime.fromtimestamp(context.create_time_since_epoch / 1000,
                                                tz=datetime.timezone.utc),
        state=state, config=None, config_fingerprint=None, spans=[], hyperparameters={},
        metrics={}, blessed=None, pushed_version=None, model_id=None,
        cached_nodes=[n.node_id for n in nodes if n.state == "CACHED"], nodes=nodes)
    record = run.node(run_record.NODE_ID)
    if record is not None:
        properties = record.execution.custom_properties
        run.config = json.loads(properties["config"].string_value)
        run.config_fingerprint = properties["config_fingerprint"].string_value
        run.spans = json.loads(properties["spans"].string_value)
    trainer = run.node("Trainer")
    run.hyperparameters = _hyperparameters(store, trainer)
    if trainer and trainer.outputs.get("model"):
        run.model_id = trainer.outputs["model"][0].id
    evaluator = run.node("Evaluator")
    if evaluator and evaluator.outputs.get("evaluation") and read_metrics:
        from pipeline.ops.summary import read_metrics as read_evaluation

        run.metrics = read_evaluation(evaluator.outputs["evaluation"][0].uri).get("Overall", {})
    if evaluator and evaluator.outputs.get("blessing"):
        run.blessed = evaluator.outputs["blessing"][0].custom_properties["blessed"].int_value == 1
    pusher = run.node("Pusher")
    if pusher and pusher.outputs.get("pushed_model"):
        pushed = pusher.outputs["pushed_model"][0].custom_properties
        if pushed.get("pushed") and pushed["pushed"].int_value == 1:
            run.pushed_version = pushed["pushed_version"].string_value
    return run


def _run_state(context, states) -> str:
    """COMPLETE, FAILED, RUNNING, or INTERRUPTED: stopped by a signal, or its process is gone."""
    if run_state.recorded_state(context) == run_state.INTERRUPTED or "CANCELED" in states:
        return run_state.INTERRUPTED
    if "FAILED" in states:
        return "FAILED"
    if states <= {"COMPLETE", "CACHED"}:
        return "COMPLETE"
    # Executions still RUNNING: a live run, or one killed outright (SIGKILL, a lost machine).
    return run_state.INTERRUPTED if run_state.process_is_gone(context) else "RUNNING"


def _hyperparameters(store, trainer: Optional[mlmd.NodeExecution]) -> Dict[str, Any]:
    """What the Trainer trained with: its custom_config, steps, and tuned values if any."""
    if trainer is None:
        return {}
    properties = trainer.execution.custom_properties
    custom_config = json.loads(properties["custom_config"].string_value or "null") or {}
    values = dict(custom_config.get("hyperparameters") or {})
    for name, key in (("train_args", "train_steps"), ("eval_args", "eval_steps")):
        if name in properties:
            args = json.loads(properties[name].string_value or "{}")
            if "num_steps" in args:
                values[key] = args["num_steps"]
    tuned = _inputs(store, trainer.execution).get("hyperparameters")
    if tuned:
        from tfx.dsl.io import fileio

        path = os.path.join(tuned[0].uri, "best_hyperparameters.txt")
        if fileio.exists(path):
            with fileio.open(path, "r") as f:
                values.update(json.load(f).get("values", {}))
            values["tuned"] = True
    return values


def _inputs(store, execution) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    return mlmd.artifacts_by_key(store, execution, (metadata_store_pb2.Event.INPUT,))


@dataclasses.dataclass
class LineageItem:
    """One artifact in a run's lineage and the node that produced it."""

    role: str  # "examples", "schema", "transform graph", ...
    artifact_id: int
    type_name: str
    uri: str
    producer: str  # node id
    reused: bool  # the producing execution was CACHED in this run
    details: Dict[str, str]


def lineage(config: PipelineConfig, run_id: Optional[str] = None) -> List[LineageItem]:
    """The artifacts that made the run's model, traced through ML Metadata's events.

    Starts from the model the Trainer output and walks its INPUT events back
    (transformed examples, transform graph, schema), then from the transformed
    examples to the raw examples Transform read; then forward to the
    evaluation, blessing and pushed model.
    """
    run = get_run(config, run_id, read_metrics=False)
    store = open_store(config)
    producers = _producers(store, run)
    items: List[LineageItem] = []

    def add(role: str, artifact, details: Optional[Dict[str, str]] = None) -> None:
        node = producers.get(artifact.id)
        items.append(LineageItem(
            role, artifact.id, store.get_artifact_types_by_id([artifact.type_id])[0].name,
            artifact.uri, node.node_id if node else "(earlier run)",
            bool(node and node.state == "CACHED"), details or {}))

    trainer = run.node("Trainer")
    if trainer is None:
        return items
    trainer_inputs = _inputs(store, trainer.execution)
    transformed = trainer_inputs.get("examples", [])
    raw_examples = []
    for artifact in transformed:
        transform = producers.get(artifact.id)
        if transform is not None:
            raw_examples += _inputs(store, transform.execution).get("examples", [])
    for artifact in raw_examples:
        add("examples", artifact, _example_details(store, artifact, producers))
    for artifact in trainer_inputs.get("schema", []):
        add("schema", artifact)
    for artifact in trainer_inputs.get("transform_graph", []):
        add("transform graph", artifact)
    for artifact in transformed:
        add("transformed examples", artifact)
    for artifact in trainer_inputs.get("hyperparameters", []):
        add("hyperparameters", artifact)
    for artifact in trainer.outputs.get("model", []):
        add("model", artifact)
    evaluator = run.node("Evaluator")
    if evaluator is not None:
        for artifact in _inputs(store, evaluator.execution).get("baseline_model", []):
            add("baseline model", artifact)
    for node_id, key, role in (("Evaluator", "evaluation", "evaluation"),
                               ("Evaluator", "blessing", "blessing"),
                               ("Pusher", "pushed_model", "pushed model")):
        node = run.node(node_id)
        for artifact in (node.outputs.get(key, []) if node else []):
            add(role, artifact, _artifact_details(artifact))
    return items


def _producers(store, run: TrackedRun) -> Dict[int, mlmd.NodeExecution]:
    """Artifact id -> the node execution of this run that output it."""
    producers = {}
    for node in run.nodes:
        for artifacts in node.outputs.values():
            for artifact in artifacts:
                producers[artifact.id] = node
    return producers


def _example_details(store, artifact, producers) -> Dict[str, str]:
    details = {}
    # ExampleGen's span is 0 unless the input pattern has {SPAN}; the RunRecord holds the spans.
    if artifact.custom_properties["span"].int_value if "span" in artifact.custom_properties else 0:
        details["span"] = str(artifact.custom_properties["span"].int_value)
    if "input_fingerprint" in artifact.custom_properties:
        details["input"] = artifact.custom_properties["input_fingerprint"].string_value
    return details


def _artifact_details(artifact) -> Dict[str, str]:
    details = {}
    for key in ("blessed", "pushed", "pushed_version", "pushed_destination"):
        if key in artifact.custom_properties:
            value = artifact.custom_properties[key]
            details[key] = value.string_value or str(value.int_value)
    return details


def rerun_config(config: PipelineConfig, run_id: str,
                 overrides: Optional[Dict[str, Any]] = None) -> PipelineConfig:
    """The config run `run_id` recorded, ready to run again.

    The metadata section (where the run was found, and its password, which is
    not recorded) comes from `config`; `overrides` win over both. If the run
    read every span (no `spans` set) and the data_root now holds other spans,
    the recorded spans are pinned so the rerun reads the same data.
    """
    run = get_run(config, run_id, read_metrics=False)
    if run.config is None:
        raise RunNotFoundError(f"Run '{run_id}' has no recorded config (it predates RunRecord).")
    values = json.loads(json.dumps(run.config))
    values["metadata"] = dataclasses.asdict(config.metadata)
    values.pop("schema_fingerprint", None)  # recomputed from the schema file by load_config
    if not values.get("spans") and run.spans:
        from pipeline.config import available_spans

        if list(available_spans(values["data_root"])) != run.spans:
            values["spans"] = run.spans
    values = _merge(values, overrides or {})
    return load_config(overrides=values)


def _merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_hyperparameters(values: Dict[str, Any]) -> str:
    """A compact one-line form, e.g. `lr=0.01 units=16,8 dropout=0.0 batch=32 steps=300`."""
    short = {"learning_rate": "lr", "hidden_units": "units", "batch_size": "batch",
             "train_steps": "steps"}
    parts = []
    for key in ("learning_rate", "hidden_units", "dropout", "batch_size", "train_steps"):
        if key in values:
            value = values[key]
            value = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value
            parts.append(f"{short.get(key, key)}={value}")
    if values.get("tuned"):
        parts.append("(tuned)")
    return " ".join(parts) or "-"


def format_runs(runs: List[TrackedRun], served_model: Optional[Dict[str, str]] = None) -> str:
    """The run history as a text table, oldest first.

    `served_model` (run id -> text) adds a last column: what the served model
    scored on the run's new span (`pipeline.ops.monitoring.decay_cells`).
    """
    header = ("RUN ID", "STARTED (UTC)", "STATE", "CONFIG", "SPANS", "HYPERPARAMETERS",
              "MODEL", "ACCURACY", "EXAMPLES", "BLESSED", "PUSHED", "CACHED") + (
        ("SERVED MODEL ON NEW SPAN",) if served_model is not None else ())
    rows = [header]
    for run in runs:
        accuracy = run.metrics.get(ACCURACY)
        count = run.metrics.get("example_count")
        rows.append((
            run.run_id,
            run.started.strftime("%Y-%m-%d %H:%M:%S"),
            run.state,
            run.config_fingerprint or "-",
            _format_spans(run.spans),
            format_hyperparameters(run.hyperparameters),
            f"#{run.model_id}" + (" (reused)" if "Trainer" in run.cached_nodes else "")
            if run.model_id else "-",
            f"{accuracy:.3f}" if accuracy is not None else "-",
            f"{count:.0f}" if count is not None else "-",
            {True: "yes", False: "no", None: "-"}[run.blessed],
            (run.pushed_version + (" (reused)" if run.pushed_reused else ""))
            if run.pushed_version else "-",
            f"{len(run.cached_nodes)}/{len(run.nodes)}",
        ) + ((served_model.get(run.run_id, "-"),) if served_model is not None else ()))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows)


def format_lineage(run: TrackedRun, items: List[LineageItem]) -> str:
    """One run's record and lineage as text."""
    lines = [f"Run {run.run_id}  ({run.started:%Y-%m-%d %H:%M:%S} UTC, {run.state})",
             f"  config hash      {run.config_fingerprint or '-'}",
             f"  spans            {_format_spans(run.spans)}",
             f"  hyperparameters  {format_hyperparameters(run.hyperparameters)}",
             f"  cached nodes     {', '.join(run.cached_nodes) or 'none'}"]
    if run.metrics:
        lines.append("  metrics          " + "  ".join(
            f"{name}={value:.4f}" for name, value in sorted(run.metrics.items())
            if "/" not in name))
    lines.append(f"  blessed          {({True: 'yes', False: 'no', None: '-'})[run.blessed]}")
    lines.append(f"  pushed version   {run.pushed_version or '-'}"
                 + (" (pushed by an earlier run; Pusher cached)" if run.pushed_reused else ""))
    lines += ["", "Lineage (artifact id, type, producer, uri):"]
    for item in items:
        reused = " [cached]" if item.reused else ""
        lines.append(f"  {item.role:<21} #{item.artifact_id:<5} {item.type_name:<17} "
                     f"{item.producer}{reused}")
        lines.append(f"  {'':<21} {item.uri}")
        lines += [f"  {'':<21} {key}: {value}" for key, value in item.details.items()]
    return "\n".join(lines)


def _format_spans(spans: List[int]) -> str:
    if not spans:
        return "all"
    if spans == list(range(spans[0], spans[-1] + 1)) and len(spans) > 2:
        return f"{spans[0]}-{spans[-1]}"
    return ",".join(str(s) for s in spans)

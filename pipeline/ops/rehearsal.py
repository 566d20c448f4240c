"""`tfxt rehearse`: a year in production on one machine, and its timeline read back from the records.

`runners.cli.lifecycle` calls `rehearse`; tests call it with fewer spans, and `inject` and
`read_timeline` directly.

Each month (span 1..N) the rehearsal
1. writes a synthetic span (`pipeline.ops.synthetic`) with a `_SUCCESS` marker, changed as
   `CHANGES` documents at known spans (a numeric mean shift, a new category, a class-balance
   change, blank values);
2. sends the span's rows, without labels, to the served model as a request stream, which the
   request log records (`serving.request_log`, one file per span);
3. runs the continuous loop once (`pipeline.ops.watch.poll_once`): check of the served model on
   the new labelled span and rollback on decay (`pipeline.ops.rollback`), then the pipeline on the
   rolling window (drift, decay, warm start, gates, push).

The timeline (`read_timeline`) is read only from ML Metadata (runs, drift, the data gate's
findings, blessing, push, decay checks), the Trainer's ModelRun artifact (warm or cold) and the
serving directory's request logs (skew), never from the loop's own variables.

What the template finds at each change (the default size, and `tests/test_rehearsal.py` on a
compressed schedule of the same changes):
- mean shift: drift on bill_length_mm (Jensen-Shannon divergence), and again on the span after,
  which shifts back;
- class balance: drift on the label, species (L-infinity distance), and again on the span after;
- new category: the data gate stops the run ('Anvers' is not in island's schema domain), before
  drift is measured; the next span stops too while the window still holds the changed span;
- blank values: the data gate stops the run (each numeric column blank in more than
  validation.max_blank_fraction of the rows); likewise the next span.
`changes` lets a caller move the changes to other spans (the kinds are the prefixes of `CHANGES`).
"""

import dataclasses
import inspect
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, TextIO

from pipeline.config import PipelineConfig, load_config

# Span (1-based month) -> what is changed in it, and how.
CHANGES: Dict[int, str] = {
    4: "mean shift: bill_length_mm +10 mm",
    6: "new category: island 'Anvers' in a third of the rows",
    8: "class balance: Gentoo 75% of the rows",
    10: "blank values: every numeric column blank in 40% of the rows",
}
# What `inject` knows how to do: the start of each change's text.
CHANGE_KINDS = ("mean shift", "new category", "class balance", "blank values")
# Small and fast: the default size must finish within 15 minutes on two cores.
REHEARSAL_SETTINGS = {
    "hyperparameters": {"train_steps": 60, "eval_steps": 5},
    "edge": {"enabled": False},
    "lifecycle": {"warm_start": True, "auto_rollback": True, "window_spans": 2},
    "monitoring": {"drift_action": "warn"},
}


def inject(frame, span: int, seed: int = 0, changes: Optional[Dict[int, str]] = None):
    """The span's rows with its documented change (`changes`, default `CHANGES`) applied."""
    import numpy as np

    change = (CHANGES if changes is None else changes).get(span, "")
    rng = np.random.default_rng(seed + span)
    frame = frame.copy()
    if change.startswith("mean shift"):
        frame["bill_length_mm"] = (frame["bill_length_mm"] + 10.0).clip(upper=70.0)
    elif change.startswith("new category"):
        frame.loc[rng.random(len(frame)) < 1 / 3, "island"] = "Anvers"
    elif change.startswith("class balance"):
        import pandas as pd

        gentoo, others = frame[frame["species"] == "Gentoo"], frame[frame["species"] != "Gentoo"]
        wanted = int(0.75 * len(frame))
        frame = pd.concat([
            gentoo.sample(n=wanted, replace=len(gentoo) < wanted, random_state=seed + span),
            others.sample(n=len(frame) - wanted, replace=len(others) < len(frame) - wanted,
                          random_state=seed + span)]).sample(frac=1.0, random_state=seed + span)
    elif change.startswith("blank values"):
        from models import features

        frame.loc[rng.random(len(frame)) < 0.4, list(features.NUMERIC_FEATURE_KEYS)] = np.nan
    return frame.reset_index(drop=True)


def write_span(incoming: str, span: int, rows: int, seed: int, profile,
               changes: Optional[Dict[int, str]] = None) -> str:
    """Writes span-<span>/penguins.csv (changed as documented), then its _SUCCESS marker."""
    from pipeline.ops import synthetic, watch

    frame = inject(synthetic.generate(profile, rows, seed=seed * 1_000_003 + span, year=2007), span, seed,
                   changes)
    folder = os.path.join(incoming, f"span-{span}")
    os.makedirs(folder, exist_ok=True)
    frame.astype({"flipper_length_mm": "Int64", "body_mass_g": "Int64"}).to_csv(
        os.path.join(folder, "penguins.csv"), index=False, na_rep="")
    open(os.path.join(folder, watch.SUCCESS_MARKER), "w").close()
    return folder


def request_log_path(config: PipelineConfig, span: int) -> str:
    from serving import server_files

    return os.path.join(os.path.dirname(server_files.serving_paths(config).request_log),
                        f"requests-span-{span}.jsonl")


def send_requests(config: PipelineConfig, span: int, span_dir: str) -> Optional[int]:
    """The span's rows, without labels, through the served version's `serving_raw`, logged.

    Returns the served version, or None when nothing is served yet.
    """
    import tensorflow as tf

    from pipeline.ops.rollback import read_span_rows, served_and_replaced
    from serving import payloads
    from serving.request_log import RequestLog

    version, _ = served_and_replaced(config)
    if version is None:
        return None
    model = tf.saved_model.load(os.path.join(config.serving_model_dir, str(version)))
    log = RequestLog(request_log_path(config, span))
    for row in read_span_rows(span_dir):
        inputs = payloads.raw_columns([row])
        started = time.perf_counter()
        outputs = model.signatures["serving_raw"](**{k: tf.constant(v) for k, v in inputs.items()})
        log.write("rest", "predict", config.pipeline_name, version, "serving_raw", "OK", started,
                  inputs=inputs, outputs={"predicted_class": outputs["predicted_class"].numpy()})
    log.close()
    return version


def rehearsal_config(out_dir: str, overrides: Optional[dict] = None) -> PipelineConfig:
    """The rehearsal's config: its own outputs under `out_dir`, `REHEARSAL_SETTINGS`, then overrides."""
    from pipeline.config import _merge
    from pipeline.ops.synthetic import DEFAULT_SOURCE, REPO_ROOT

    values = _merge(dict(REHEARSAL_SETTINGS), {
        "pipeline_name": "rehearsal", "output_dir": os.path.join(out_dir, "outputs"),
        "data_root": DEFAULT_SOURCE, "schema_path": os.path.join(REPO_ROOT, "schema", "schema.pbtxt")})
    return load_config(overrides=_merge(values, overrides or {}))


def rehearse(out_dir: str, spans: int = 12, rows_per_span: int = 120, seed: int = 0,
             overrides: Optional[dict] = None, stream: Optional[TextIO] = None,
             changes: Optional[Dict[int, str]] = None) -> List["TimelineRow"]:
    """Runs the year (see the module docstring) and prints its timeline; returns the rows.

    `changes` maps spans to changes (default `CHANGES`); tests compress the schedule with it.
    """
    from pipeline.ops import rollback, synthetic, watch

    changes = CHANGES if changes is None else changes
    unknown = sorted(text for text in changes.values()
                     if not any(text.startswith(kind) for kind in CHANGE_KINDS))
    if unknown:
        raise ValueError(f"Unknown rehearsal change(s) {unknown}; each must start with one of "
                         f"{CHANGE_KINDS}.")
    stream = stream or sys.stdout
    config = rehearsal_config(out_dir, overrides)
    incoming = os.path.join(out_dir, "incoming")
    profile = synthetic.fit_profile()
    started = time.monotonic()
    for span in range(1, spans + 1):
        span_dir = write_span(incoming, span, rows_per_span, seed, profile, changes)
        stream.write(f"\n=== Span {span}: {changes.get(span, 'no change')} ===\n")
        send_requests(config, span, span_dir)
        watch.poll_once(config, incoming, stream=stream, before_run=rollback.before_run,
                        after_run=rollback.serve_newest)
    stream.write(f"\nRehearsal of {spans} spans took {time.monotonic() - started:.0f} s\n\n")
    rows = read_timeline(config, spans, changes)
    stream.write(format_timeline(rows) + "\n")
    return rows


@dataclasses.dataclass
class TimelineRow:
    """What happened at one span, read back from ML Metadata and the serving directory."""

    span: int
    change: str
    drift: List[str]
    skew: List[str]
    served_accuracy: Optional[float]
    training: str  # "warm", "cold" or "-" (no training: the run stopped before the Trainer)
    blessed: Optional[bool]
    pushed_version: Optional[str]
    rollback: str
    # The gate that stopped the run and the columns it named, e.g. "data: island"; "" if none did.
    stopped: str = ""


def read_timeline(config: PipelineConfig, spans: int,
                  changes: Optional[Dict[int, str]] = None) -> List[TimelineRow]:
    """One row per span 1..`spans`, from the records only (`changes` only labels the rows)."""
    from pipeline.ops import monitoring, rollback, tracking

    changes = CHANGES if changes is None else changes
    runs = {run.spans[-1]: run for run in tracking.list_runs(config, read_metrics=False) if run.spans}
    checks = {check.span: check for check in rollback.rollback_records(config)}
    rows = []
    for span in range(1, spans + 1):
        run, check = runs.get(span), checks.get(span)
        drift = []
        if run is not None:
            for result in monitoring.drift_results(config, run.run_id):
                drift = [d.feature for d in result.drifted]
        rows.append(TimelineRow(
            span=span, change=changes.get(span, ""), drift=drift, skew=_skew(config, span),
            served_accuracy=check.served_accuracy if check else None,
            training=_training(run), blessed=run.blessed if run else None,
            pushed_version=run.pushed_version if run and not run.pushed_reused else None,
            rollback=(f"{check.served_version} -> {check.stable_after}"
                      if check and check.rolled_back else ""),
            stopped=_stopped(config, run)))
    return rows


def _stopped(config: PipelineConfig, run) -> str:
    """Which gate stopped `run` and the columns it named, from its recorded execution."""
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import mlmd
    from pipeline.components import anomalies_gate, drift_gate

    failed = [node for node in (run.nodes if run else []) if node.state == "FAILED"]
    if not failed:
        return ""
    node = failed[0]
    if node.node_id == drift_gate.NODE_ID:
        return "drift"
    if node.node_id != "AnomaliesGate":
        return node.node_id
    # The gate's findings, recomputed from the very artifacts and parameters it was given.
    inputs = mlmd.artifacts_by_key(mlmd.open_store(config), node.execution,
                                   (metadata_store_pb2.Event.INPUT,))
    # TFX records a component's parameters as custom properties of its execution, by name.
    parameters = {name: getattr(value, value.WhichOneof("value"))
                  for name, value in node.execution.custom_properties.items()
                  if name in inspect.signature(anomalies_gate.gate_problems).parameters}
    problems = anomalies_gate.gate_problems(
        inputs["anomalies"][0].uri, inputs["statistics"][0].uri, inputs["schema"][0].uri, **parameters)
    return "data: " + ",".join(sorted({problem.column for problem in problems}))


def _skew(config: PipelineConfig, span: int) -> List[str]:
    from pipeline.ops import monitoring
    from serving.request_log import read_rows

    path = request_log_path(config, span)
    if not os.path.exists(path):
        return []
    rows, _ = read_rows(path)
    with open(path) as f:
        version = json.loads(f.readline())["version"]
    try:
        return [s.feature for s in monitoring.check_skew(config, rows, version).skewed]
    except monitoring.MonitoringError:
        return []


def _training(run) -> str:
    from tfx.dsl.io import fileio

    from pipeline.training.warm_start import WARM_START_FILE

    trainer = run.node("Trainer") if run else None
    if trainer is None or trainer.state != "COMPLETE" or not trainer.outputs.get("model_run"):
        return "-"
    path = os.path.join(trainer.outputs["model_run"][0].uri, WARM_START_FILE)
    if not fileio.exists(path):
        return "?"
    with fileio.open(path) as f:
        return json.loads(f.read())["mode"]


def format_timeline(rows: Sequence[TimelineRow]) -> str:
    header = (f"{'span':>4}  {'drift':<22} {'skew':<22} {'served acc':>10}  {'trained':<7} "
              f"{'blessed':<7} {'pushed':<11} {'rollback':<23} {'stopped by':<28} change")
    lines = [header]
    for row in rows:
        accuracy = f"{row.served_accuracy:.3f}" if row.served_accuracy is not None else "-"
        blessed = {True: "yes", False: "no", None: "-"}[row.blessed]
        lines.append(f"{row.span:>4}  {','.join(row.drift) or '-':<22} {','.join(row.skew) or '-':<22} "
                     f"{accuracy:>10}  {row.training:<7} {blessed:<7} {row.pushed_version or '-':<11} "
                     f"{row.rollback or '-':<23} {row.stopped or '-':<28} {row.change}")
    return "\n".join(lines)

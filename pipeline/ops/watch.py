"""Continuous training: watch a data folder and run the pipeline on each new complete span.

`tfxt watch DATA_ROOT` (`runners.cli.lifecycle`) and the rehearsal (`pipeline.ops.rehearsal`)
call `watch` / `poll_once`; tests call `poll_once` one pass at a time with their own `run`.

- A span is **complete** when its folder holds a `_SUCCESS` marker (what Hadoop, Spark and
  `gsutil`-based loaders write last), or, with `lifecycle.stable_seconds` > 0, when it holds CSV
  files none of which changed for that long. A half-copied span is never read.
- Each new complete span, oldest first, gets one run on a **rolling window**: the newest
  `lifecycle.window_spans` complete spans up to it. The window is staged as symbolic links under
  `<output_dir>/watch/window/`, which becomes the run's data_root, so ExampleGen sees exactly
  those spans (one glob pattern cannot select any window, e.g. 2009-2011) and nothing half-copied.
- The first pass of a new watcher runs once, on the newest window, and counts older spans as
  seen; which spans were seen is kept in `<output_dir>/watch/state.json`.
- One watcher per pipeline (the lock `watch`); each run takes the run lock itself
  (`pipeline.ops.run.run_and_report`), so a watcher and a manual `tfxt run` never overlap.
- Only models the Evaluator blesses against the current baseline are pushed: that is the
  pipeline's own gate, unchanged here.

The watcher reads a local folder (or a mounted bucket): symbolic links and modification times
are what make staging and stability cheap, and `tfx.dsl.io.fileio` has neither.
"""

import dataclasses
import json
import os
import sys
import time
from typing import Callable, List, Optional, Sequence, TextIO, Tuple

from pipeline.config import PipelineConfig

SUCCESS_MARKER = "_SUCCESS"
# `pipeline.ops.run.EXIT_BUSY`: another run held the run lock (kept here so that a scan with
# an injected run does not import the runner's machinery).
EXIT_BUSY = 75
STATE_FILE = "state.json"

RunFn = Callable[[PipelineConfig], int]


@dataclasses.dataclass(frozen=True)
class SpanRun:
    """One run the watcher made: the new span, the window it trained on, the run's exit code."""

    span: int
    window: Tuple[int, ...]
    exit_code: int


def watch_dir(config: PipelineConfig) -> str:
    return os.path.join(config.output_dir, "watch")


def span_dirs(data_root: str) -> List[Tuple[int, str]]:
    """(span, folder) for every span-<N> folder under `data_root`, by span."""
    if not os.path.isdir(data_root):
        return []
    found = [(int(name[5:]), os.path.join(data_root, name)) for name in os.listdir(data_root)
             if name.startswith("span-") and name[5:].isdigit()]
    return sorted(found)


def is_complete(span_dir: str, stable_seconds: float, now: Optional[float] = None) -> bool:
    """Whether a span folder is fully written (see the module docstring)."""
    if os.path.exists(os.path.join(span_dir, SUCCESS_MARKER)):
        return True
    if stable_seconds <= 0:
        return False
    names = os.listdir(span_dir)
    if not any(name.endswith(".csv") for name in names):
        return False
    now = time.time() if now is None else now
    newest = max(os.path.getmtime(os.path.join(span_dir, name)) for name in names)
    return now - newest >= stable_seconds


def complete_spans(data_root: str, stable_seconds: float = 0.0, now: Optional[float] = None) -> List[int]:
    return [span for span, path in span_dirs(data_root) if is_complete(path, stable_seconds, now)]


def rolling_window(complete: Sequence[int], span: int, size: int) -> Tuple[int, ...]:
    """The newest `size` complete spans up to and including `span` (all of them for size 0)."""
    upto = [s for s in sorted(complete) if s <= span]
    return tuple(upto[-size:] if size else upto)


def stage_window(config: PipelineConfig, data_root: str, window: Sequence[int]) -> str:
    """Links exactly the window's span folders into `<output_dir>/watch/window/`; returns it."""
    staged = os.path.join(watch_dir(config), "window")
    os.makedirs(staged, exist_ok=True)
    for name in os.listdir(staged):
        os.unlink(os.path.join(staged, name))
    for span in window:
        os.symlink(os.path.join(data_root, f"span-{span}"), os.path.join(staged, f"span-{span}"))
    return staged


def read_seen(config: PipelineConfig) -> List[int]:
    path = os.path.join(watch_dir(config), STATE_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return sorted(json.load(f).get("seen", []))


def _write_seen(config: PipelineConfig, seen: Sequence[int]) -> None:
    path = os.path.join(watch_dir(config), STATE_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"seen": sorted(set(seen))}, f)
    os.replace(path + ".tmp", path)


def run_pipeline(config: PipelineConfig) -> int:
    """The default run: the local pipeline with progress and summary; returns its exit code."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.ops.run import run_and_report
    from pipeline.pipeline import create_pipeline

    return run_and_report(config, lambda: LocalDagRunner().run(create_pipeline(config)))


def poll_once(config: PipelineConfig, data_root: Optional[str] = None, run: RunFn = run_pipeline,
              now: Optional[float] = None, stream: Optional[TextIO] = None,
              before_run: Optional[Callable[[PipelineConfig, int], None]] = None,
              after_run: Optional[Callable[[PipelineConfig], object]] = None) -> List[SpanRun]:
    """One pass: runs the pipeline once per new complete span, oldest first.

    Args:
      config: the pipeline config; its data_root is replaced by the staged window for each run.
      data_root: the folder to watch (default: config.data_root).
      run: runs the pipeline on a config and returns its exit code (tests inject their own).
      now: the time stability is measured against (default: the clock).
      stream: where one line per span goes.
      before_run: called with (config, span) before each run, e.g. to check the served model
        on the new span (`pipeline.ops.rollback.before_run`).
      after_run: called with the run's config after each successful run
        (`pipeline.ops.rollback.serve_newest`).

    Returns:
      The runs made, in order.
    """
    data_root = data_root or config.data_root
    stream = stream or sys.stdout
    lifecycle = config.lifecycle
    complete = complete_spans(data_root, lifecycle.stable_seconds, now)
    seen = read_seen(config)
    new = [span for span in complete if span not in seen]
    if not seen and new:
        # A new watcher starts from the newest window rather than replaying history.
        seen, new = new[:-1], new[-1:]
    pending = sorted({span for span, _ in span_dirs(data_root)} - set(complete))
    if pending:
        stream.write(f"Waiting for span(s) {pending} in {data_root}: no {SUCCESS_MARKER} marker yet"
                     + (f" and files changed in the last {lifecycle.stable_seconds:g} s.\n"
                        if lifecycle.stable_seconds > 0 else ".\n"))
    runs = []
    for span in new:
        window = rolling_window(complete, span, lifecycle.window_spans)
        run_config = dataclasses.replace(config, data_root=stage_window(config, data_root, window), spans=())
        stream.write(f"New span {span}: training on spans {list(window)}\n")
        if before_run is not None:
            before_run(run_config, span)
        exit_code = run(run_config)
        runs.append(SpanRun(span, window, exit_code))
        if exit_code == EXIT_BUSY or exit_code >= 128:
            # Another run held the run lock, or the run was interrupted: the span is not seen
            # yet, and the next scan tries it again.
            stream.write(f"Span {span} not trained (exit code {exit_code}); trying again on the next scan.\n")
            break
        if exit_code == 0 and after_run is not None:
            after_run(run_config)
        seen = sorted(set(seen) | {span})
        _write_seen(config, seen)
    return runs


def watch(config: PipelineConfig, data_root: Optional[str] = None, run: RunFn = run_pipeline,
          passes: Optional[int] = None, sleep: Callable[[float], None] = time.sleep,
          stream: Optional[TextIO] = None, before_run=None, after_run=None) -> List[SpanRun]:
    """Polls every `lifecycle.poll_seconds` (forever, or `passes` times) under the watch lock.

    Raises:
      LockHeldError: another watcher of this pipeline is running (the message names it).
    """
    from pipeline.ops.lock import pipeline_lock

    runs: List[SpanRun] = []
    stream = stream or sys.stdout
    with pipeline_lock(config, name="watch"):
        stream.write(f"Watching {data_root or config.data_root} for complete spans every "
                     f"{config.lifecycle.poll_seconds:g} s (window: {config.lifecycle.window_spans} spans)\n")
        done = 0
        while passes is None or done < passes:
            runs.extend(poll_once(config, data_root, run=run, stream=stream, before_run=before_run,
                                  after_run=after_run))
            done += 1
            if passes is None or done < passes:
                sleep(config.lifecycle.poll_seconds)
    return runs


def new_span_ready(config: PipelineConfig, now: Optional[float] = None) -> bool:
    """The Airflow DAG's sensor: whether a run should start now.

    True when every span folder under data_root is complete (so the run, which reads all the
    configured spans, reads nothing half-copied) and the newest one is not among the spans the
    latest recorded run (its RunRecord in ML Metadata) read.
    """
    from pipeline.ops.tracking import list_runs

    folders = span_dirs(config.data_root)
    complete = complete_spans(config.data_root, config.lifecycle.stable_seconds, now)
    if not complete or len(complete) != len(folders):
        return False
    runs = list_runs(config, read_metrics=False)
    return not runs or complete[-1] not in runs[-1].spans

"""Runs a pipeline with live progress and prints the summary: what runners and the CLI call.

`run_and_report` holds the pipeline's run lock (`pipeline.ops.lock`) for the run, records the
run's process and outcome in ML Metadata (`pipeline.ops.run_state`), turns Ctrl-C and SIGTERM
into a clean "interrupted during <component>", and reports this process's own run: the summary
and the run report (`pipeline.ops.report`). Its return value is the process exit code, one per
outcome (README, "Exit codes").
"""

import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable, Iterator, List, Optional, TextIO

from pipeline import mlmd
from pipeline.components.anomalies_gate import DataValidationError
from pipeline.config import ConfigError, PipelineConfig
from pipeline.ops import run_state, unchanged
from pipeline.ops.lock import LockHeldError, pipeline_lock
from pipeline.ops.progress import show_progress
from pipeline.ops.report import report_after_run
from pipeline.ops.summary import format_summary, summarize

# Exit codes of a run (documented in the README).
EXIT_PUSHED = 0          # every component succeeded and the model is blessed (and served)
EXIT_FAILED = 1          # a component failed (the message says which and why)
EXIT_CONFIG_ERROR = 2    # the config is invalid; nothing ran (the runners and the CLI)
EXIT_NOT_BLESSED = 3     # the run succeeded but the model failed the Evaluator's gates
EXIT_DATA_STOPPED = 4    # data validation stopped the run before Transform
EXIT_BUSY = 75           # another run of the pipeline holds the run lock (EX_TEMPFAIL)
# Interrupted: 128 + the signal, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM.


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during the run; a BaseException so TFX's handlers let it through."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_and_report(config: PipelineConfig, run: Callable[[], object],
                   stream: TextIO = sys.stdout) -> int:
    """Calls `run()` under the run lock with progress lines, then prints this run's summary.

    Returns the exit code: EXIT_PUSHED, EXIT_NOT_BLESSED, EXIT_DATA_STOPPED, EXIT_FAILED,
    EXIT_BUSY, or 128 + the signal number when interrupted. User errors (bad data, a busy
    pipeline) are one clear message, not a trace.
    """
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    _skip_collections_at_exit()
    try:
        with pipeline_lock(config):
            return _run_locked(config, run, stream)
    except LockHeldError as e:
        stream.write(f"Run REFUSED: {e}\n")
        return EXIT_BUSY


def _skip_collections_at_exit() -> None:
    """Spares the process's exit the interpreter's final garbage collections.

    After a run, TensorFlow, Beam and TFMA leave a heap whose final collections (while
    Python tears its modules down) took 6-17 s of the process's exit on a loaded 2-core
    machine, 0.5 s with the heap frozen first. Frozen objects are still freed by reference
    counting and atexit handlers still run; the operating system takes back the rest.
    """
    if not getattr(_skip_collections_at_exit, "registered", False):
        atexit.register(gc.freeze)  # atexit runs handlers last-in first-out: this one early
        _skip_collections_at_exit.registered = True


class _RunTracker:
    """Finds the run this process started and stamps it with the process, as early as it can."""

    def __init__(self, store, pipeline_name: str):
        self.store = store
        self.pipeline_name = pipeline_name
        self.before = mlmd.run_ids(store, pipeline_name)
        self.run_id: Optional[str] = None

    def on_start(self, node_id: str) -> None:
        if self.run_id is None:
            try:
                self.find()
            except Exception:  # noqa: BLE001 - stamping is best effort; the end of the run retries
                logging.debug("Could not stamp the run yet", exc_info=True)

    def find(self) -> Optional[str]:
        if self.run_id is None:
            self.run_id = run_state.new_run_id(self.store, self.pipeline_name, self.before)
            if self.run_id is not None:
                run_state.stamp(self.store, self.run_id, "RUNNING")
        return self.run_id


def _run_locked(config: PipelineConfig, run: Callable[[], object], stream: TextIO) -> int:
    log_path = os.path.join(config.output_dir, "logs",
                            f"{config.pipeline_name}-{time.strftime('%Y%m%d-%H%M%S')}.log")
    stream.write(f"Pipeline '{config.pipeline_name}': data {config.data_root}, "
                 f"outputs {config.output_dir}\nFull log: {log_path}\n")
    # A real run voids the fast path's record; only its own outcome may write it again.
    unchanged.forget(config)
    inputs = unchanged.input_fingerprints(config)
    store = mlmd.open_store(config)
    for run_id in run_state.cancel_dead_runs(store, config.pipeline_name):
        stream.write(f"Earlier run {run_id} was interrupted (its process is gone): its RUNNING "
                     "executions are now marked CANCELED.\n")
    tracker = _RunTracker(store, config.pipeline_name)
    error: Optional[BaseException] = None
    interrupted: Optional[int] = None
    with show_progress(stream, log_path, on_start=tracker.on_start) as progress:
        try:
            with _signals_interrupt():
                run()
        except Interrupted as e:
            interrupted = e.signum
        except KeyboardInterrupt:
            interrupted = signal.SIGINT
        except Exception as e:  # noqa: BLE001 - reported below with the summary
            error = e
        during = progress.running
    run_id = tracker.find()
    if interrupted is not None:
        return _report_interrupted(config, store, run_id, interrupted, during, stream)
    if run_id is not None:
        run_state.stamp(store, run_id, "FAILED" if error is not None else "COMPLETE")
    summary = summarize(config, run_id) if run_id is not None else None
    report = None
    if summary is not None:
        stream.write("\n" + format_summary(summary, config) + "\n")
        if config.report.enabled:
            report = report_after_run(config, stream, run_id)
    if error is not None:
        cause = _root_cause(error)
        if isinstance(cause, ConfigError):  # found while building the pipeline: nothing ran
            stream.write(f"\nConfig error: {cause}\n")
            return EXIT_CONFIG_ERROR
        if not isinstance(cause, DataValidationError):
            logging.exception("The pipeline run failed", exc_info=error)
        stream.write(f"\nRun FAILED: {cause}\n")
        return EXIT_DATA_STOPPED if isinstance(cause, DataValidationError) else EXIT_FAILED
    if summary is not None and summary.blessed is False:
        return EXIT_NOT_BLESSED
    if summary is not None and summary.succeeded and unchanged.quiescent(store, summary.nodes):
        # Every component came from the cache: the same inputs would give the same nothing again.
        unchanged.record(config, inputs, summary.run_id, summary.pushed_version, summary.pushed_path,
                         report)
    return EXIT_PUSHED


def _report_interrupted(config: PipelineConfig, store, run_id: Optional[str], signum: int,
                        during: Optional[str], stream: TextIO) -> int:
    canceled: List[str] = []
    if run_id is not None:
        canceled = run_state.cancel_running(store, config.pipeline_name, run_id)
    name = signal.Signals(signum).name
    where = f"during {during}" if during else "before any component started"
    detail = (f"; run {run_id} is recorded as INTERRUPTED and its running executions "
              f"({', '.join(canceled) or 'none'}) as CANCELED in ML Metadata" if run_id else "")
    stream.write(f"\nRun interrupted {where} ({name}){detail}. Run again to finish it: "
                 "completed components come from the cache.\n")
    return 128 + signum


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread while the block runs.

    SIGTERM would otherwise end the process at once, and a SIGINT inherited as ignored
    (a script's `cmd &`) would do nothing. The previous handlers come back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return error

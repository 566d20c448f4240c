"""Runs a pipeline with live progress, then prints the summary and writes the report (runners, CLI)."""

import logging
import os
import sys
import time
from typing import Callable, TextIO

from pipeline.components.anomalies_gate import DataValidationError
from pipeline.config import PipelineConfig
from pipeline.ops.progress import show_progress
from pipeline.ops.report import report_after_run
from pipeline.ops.summary import format_summary, summarize


def run_and_report(config: PipelineConfig, run: Callable[[], object],
                   stream: TextIO = sys.stdout) -> int:
    """Calls `run()` with progress lines, then prints the run summary and writes the run report.

    Returns a process exit code: 0 if every component succeeded, 1 otherwise.
    A data validation failure is reported as one clear message, not a trace.
    """
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    log_path = os.path.join(config.output_dir, "logs",
                            f"{config.pipeline_name}-{time.strftime('%Y%m%d-%H%M%S')}.log")
    stream.write(f"Pipeline '{config.pipeline_name}': data {config.data_root}, "
                 f"outputs {config.output_dir}\nFull log: {log_path}\n")
    error = None
    with show_progress(stream, log_path):
        try:
            run()
        except Exception as e:  # noqa: BLE001 - reported below with the summary
            error = e
    summary = summarize(config)
    if summary is not None:
        stream.write("\n" + format_summary(summary, config) + "\n")
        if config.report.enabled:
            report_after_run(config, stream)
    if error is not None:
        if not isinstance(_root_cause(error), DataValidationError):
            logging.exception("The pipeline run failed", exc_info=error)
        stream.write(f"\nRun FAILED: {_root_cause(error)}\n")
        return 1
    return 0


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return error

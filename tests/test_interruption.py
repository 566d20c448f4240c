"""Interrupted runs (issue 13, case 6): Ctrl-C, SIGTERM and SIGKILL while Transform runs.

One module-scoped sequence of runner processes on the same outputs, each signalled as soon as
its progress line says Transform started: SIGINT, then SIGTERM, then SIGKILL. Later runs reuse
the cached ExampleGen and StatisticsGen, so each gets to Transform quickly; no run trains.
Then the next run's start (a run with nothing to run) and `tfxt runs list` must recognise the
killed run, and `tfxt gc` must remove the killed Transform's partial folder and nothing else.
"""

import dataclasses
import io
import os
import signal
import subprocess
import sys
import threading
import time
from typing import List

import pytest
from click.testing import CliRunner

from pipeline import mlmd
from pipeline.config import load_config
from pipeline.ops import tracking
from pipeline.ops.run import run_and_report
from tests.conftest import DATA_ROOT, REPO_ROOT, RUN_TIMEOUT_SECONDS, write_config

pytestmark = pytest.mark.e2e

SMALL_RUN = {"hyperparameters": {"train_steps": 30, "eval_steps": 5}, "edge": {"enabled": False}}


@dataclasses.dataclass
class Interrupted:
    signum: int
    returncode: int
    output: str
    pid: int


def _run_until(config, config_path: str, directory: str, component: str, signum: int) -> Interrupted:
    """Starts the local runner and sends `signum` once `component`'s execution is RUNNING."""
    process = subprocess.Popen(
        [sys.executable, os.path.join(REPO_ROOT, "runners", "local_runner.py")], cwd=directory,
        env={**os.environ, "TFXT_CONFIG": config_path}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    lines: List[str] = []
    # Drains the output while this thread watches ML Metadata, so the runner never blocks on it.
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        _wait_for_running_execution(config, component, process, lines)
        process.send_signal(signum)
        process.wait(timeout=RUN_TIMEOUT_SECONDS)
        reader.join(timeout=60)
    finally:
        process.kill()
        process.wait()
    return Interrupted(signum, process.returncode, "".join(lines), process.pid)


def _wait_for_running_execution(config, component: str, process: subprocess.Popen,
                                lines: List[str]) -> None:
    """Polls ML Metadata until the run's `component` execution is registered as RUNNING.

    The progress line comes just before TFX registers the execution; a signal in between
    would leave nothing to cancel.
    """
    store = None
    while process.poll() is None:
        if store is None and os.path.exists(config.metadata_path):
            store = mlmd.open_store(config)
        if store is not None:
            nodes = mlmd.run_executions(store, config.pipeline_name)
            if any(n.node_id == component and n.state == "RUNNING" for n in nodes):
                return
        time.sleep(0.5)
    raise AssertionError(f"the run ended before {component} was registered:\n" + "".join(lines)[-3000:])


@pytest.fixture(scope="module")
def interrupted_runs(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("interrupted"))
    config_path = write_config(directory, SMALL_RUN)
    config = load_config(config_path, base_dir=directory)
    runs = [_run_until(config, config_path, directory, "Transform", signum)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)]
    return config, config_path, runs


def _transform_state(config, run_id: str) -> str:
    store = mlmd.open_store(config)
    nodes = mlmd.run_executions(store, config.pipeline_name, run_id)
    return next(n.state for n in nodes if n.node_id == "Transform")


@pytest.mark.parametrize("index, code", [(0, 130), (1, 143)], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_the_run_with_one_line_and_its_exit_code(interrupted_runs, index, code):
    config, _, runs = interrupted_runs
    run = runs[index]
    assert run.returncode == code, run.output[-3000:]
    assert "interrupted during Transform" in run.output
    assert "Traceback" not in run.output
    history = tracking.list_runs(config, read_metrics=False)
    assert history[index].state == "INTERRUPTED"
    assert _transform_state(config, history[index].run_id) == "CANCELED"


def test_a_killed_run_is_shown_as_interrupted_and_cancelled_by_the_next_run(interrupted_runs):
    config, config_path, runs = interrupted_runs
    assert runs[2].returncode == -signal.SIGKILL
    killed = tracking.list_runs(config, read_metrics=False)[2]
    # TFX itself leaves the execution RUNNING; the recorded process tells that it is dead.
    assert _transform_state(config, killed.run_id) == "RUNNING"
    listed = CliRunner().invoke(_cli(), ["runs", "list", "--config", config_path])
    assert listed.exit_code == 0, listed.output
    assert killed.run_id in listed.output and "INTERRUPTED" in listed.output.split(killed.run_id)[1]
    stream = io.StringIO()
    assert run_and_report(config, lambda: None, stream) == 0
    assert f"Earlier run {killed.run_id} was interrupted" in stream.getvalue()
    # This process made no run, so it reports none (not the newest run in the store).
    assert f"Run {killed.run_id}" not in stream.getvalue()
    assert _transform_state(config, killed.run_id) == "CANCELED"


def test_gc_removes_only_the_killed_components_partial_folder(interrupted_runs):
    config, config_path, _ = interrupted_runs
    store = mlmd.open_store(config)
    referenced = [a.uri for a in store.get_artifacts()]
    dry = CliRunner().invoke(_cli(), ["gc", "--dry-run", "--config", config_path])
    assert dry.exit_code == 0, dry.output
    listed = [line.strip() for line in dry.output.splitlines()[1:]]
    assert listed and all(os.sep + "Transform" + os.sep in path for path in listed)
    assert all(os.path.isdir(path) for path in listed)  # a dry run removes nothing
    removed = CliRunner().invoke(_cli(), ["gc", "--config", config_path])
    assert removed.exit_code == 0, removed.output
    assert not any(os.path.exists(path) for path in listed)
    assert all(os.path.exists(uri) for uri in referenced if uri.startswith(config.pipeline_root))


def _cli():
    from runners.cli.main import main

    return main


def test_schema_refresh_reads_only_runs_of_the_configured_data(interrupted_runs, tmp_path):
    """The store holds runs on the bundled data; a config for other data must not take their schema."""
    import dataclasses
    import shutil

    from pipeline.ops.schema_refresh import latest_inferred_schema_uri

    config, _, _ = interrupted_runs
    assert os.path.isdir(latest_inferred_schema_uri(config))  # SchemaGen ran before Transform
    other_data = tmp_path / "fruit"
    shutil.copytree(os.path.join(DATA_ROOT, "span-2007"), other_data / "span-2007")
    with pytest.raises(LookupError) as missing:
        latest_inferred_schema_uri(dataclasses.replace(config, data_root=str(other_data)))
    assert f"on {other_data} in {config.metadata_path}" in str(missing.value)
    assert "TFXT_CONFIG" in str(missing.value) and "\n" not in str(missing.value)

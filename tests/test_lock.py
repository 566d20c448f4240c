"""The run lock (`pipeline.ops.lock`) between real processes, on the SQLite and the MySQL store.

A child process takes the lock and holds it until its stdin closes; this process then tries the
same lock. No pipeline runs here, and no TensorFlow is imported.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from pipeline.config import load_config
from pipeline.ops.lock import LockHeldError, pipeline_lock
from tests.conftest import DATA_ROOT, REPO_ROOT, SCHEMA_PATH

# The child takes the lock, says so, then holds it until its stdin closes.
HOLDER = """
import json, sys
from pipeline.config import load_config
from pipeline.ops.lock import pipeline_lock
with pipeline_lock(load_config(overrides=json.loads(sys.argv[1]))):
    print("locked", flush=True)
    sys.stdin.read()
"""
# An upper bound for a busy machine, not a timing.
WAIT_BOUND_SECONDS = 120


def _values(tmp_path, metadata=None) -> dict:
    values = {"output_dir": str(tmp_path / "outputs"), "data_root": DATA_ROOT, "schema_path": SCHEMA_PATH}
    if metadata:
        values["metadata"] = metadata
    return values


def _start_holder(values: dict) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, json.dumps(values)], cwd=REPO_ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.strip() == "locked", f"the holder did not take the lock (exit {process.poll()})"
    return process


def _check_lock_between_processes(values: dict) -> None:
    config = load_config(overrides=values)
    holder = _start_holder(values)
    try:
        with pytest.raises(LockHeldError) as refused:
            with pipeline_lock(config):
                pytest.fail("took a lock another process holds")
        message = str(refused.value)
        assert "\n" not in message
        assert f"pid {holder.pid}" in message and "penguin" in message
        # Another lock name of the same pipeline is independent.
        with pipeline_lock(config, name="other"):
            pass
        holder.stdin.close()  # the holder finishes; a waiting run then gets the lock
        with pipeline_lock(config, wait_seconds=WAIT_BOUND_SECONDS) as me:
            assert me["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def _check_killed_holder_frees_the_lock(values: dict) -> None:
    config = load_config(overrides=values)
    holder = _start_holder(values)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with pipeline_lock(config, wait_seconds=WAIT_BOUND_SECONDS):
        pass


def test_sqlite_store_lock_excludes_a_second_process(tmp_path):
    _check_lock_between_processes(_values(tmp_path))


def test_sqlite_store_lock_is_freed_when_its_holder_is_killed(tmp_path):
    _check_killed_holder_frees_the_lock(_values(tmp_path))


def test_lock_waits_no_longer_than_asked(tmp_path):
    values = _values(tmp_path)
    holder = _start_holder(values)
    try:
        with pytest.raises(LockHeldError, match="after waiting 0.5 s"):
            with pipeline_lock(load_config(overrides=values), wait_seconds=0.5):
                pass
    finally:
        holder.kill()
        holder.wait()


def _mysql(mariadb) -> dict:
    return {"backend": "mysql", "host": mariadb.host, "port": mariadb.port, "database": "mlmd_lock",
            "user": mariadb.user, "password": mariadb.password}


def test_mysql_store_lock_excludes_a_second_process(mariadb, tmp_path):
    _check_lock_between_processes(_values(tmp_path, _mysql(mariadb)))


def test_mysql_store_lock_is_freed_when_its_holder_is_killed(mariadb, tmp_path):
    _check_killed_holder_frees_the_lock(_values(tmp_path, _mysql(mariadb)))


def test_a_second_run_is_refused_naming_the_holder_and_runs_nothing(tmp_path):
    import io

    from pipeline.ops.run import EXIT_BUSY, run_and_report

    values = _values(tmp_path)
    holder = _start_holder(values)
    ran = []
    try:
        stream = io.StringIO()
        code = run_and_report(load_config(overrides=values), lambda: ran.append(True), stream)
    finally:
        holder.kill()
        holder.wait()
    assert code == EXIT_BUSY and not ran
    assert stream.getvalue().startswith("Run REFUSED: Pipeline 'penguin' is busy")
    assert f"pid {holder.pid}" in stream.getvalue() and len(stream.getvalue().splitlines()) == 1

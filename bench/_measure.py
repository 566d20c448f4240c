"""Running one command as a measured subprocess, shared by the benchmarks that run pipelines
(`bench.penguin`, `bench.scale`, `bench.anchor`).

`run_measured` starts the command with its output in a log file and returns its wall time and
the CPU time and peak resident memory of it and all its children. `node_seconds` reads each
component's seconds back from an ML Metadata SQLite file, whichever pipeline wrote it.
"""

import dataclasses
import subprocess
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional


class PeakMemory:
    """Samples the summed RSS of a process and its descendants until stopped.

    It also keeps each process's last CPU time (user + system), so `cpu_seconds`
    is the work done, which other load on a shared machine inflates far less
    than wall time.
    """

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval
        self.peak_bytes = 0
        self._cpu_by_pid: Dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                processes = [self._process] + self._process.children(recursive=True)
                total = 0
                for process in processes:
                    try:
                        total += process.memory_info().rss
                        times = process.cpu_times()
                        # Own time only: a reaped child's time would be counted twice.
                        self._cpu_by_pid[process.pid] = times.user + times.system
                    except psutil.Error:
                        pass
                self.peak_bytes = max(self.peak_bytes, total)
            except psutil.Error:
                return
            self._stop.wait(self._interval)

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu_by_pid.values())


@dataclasses.dataclass
class Measurement:
    """One measured run: wall seconds, CPU seconds and peak RSS of the process tree."""

    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    started_at: float  # time.time() when the process was started
    ended_at: float


def run_measured(command: List[str], cwd: str, log_path: str,
                 env: Optional[Mapping[str, str]] = None,
                 on_line: Optional[Callable[[str, float], None]] = None) -> Measurement:
    """Runs `command` in `cwd`, its output appended to `log_path`, and measures it.

    With `on_line`, each output line is also passed, as it comes, with the seconds since the start
    (e.g. to time the first component's "running" line); the command should then run unbuffered.
    """
    started_at, started = time.time(), time.monotonic()
    with open(log_path, "a", buffering=1) as log:
        process = subprocess.Popen(command, cwd=cwd, env=dict(env) if env is not None else None,
                                   stdout=subprocess.PIPE if on_line else log,
                                   stderr=subprocess.STDOUT, text=True)
        with PeakMemory(process.pid) as memory:
            if on_line:
                for line in process.stdout:
                    on_line(line, time.monotonic() - started)
                    log.write(line)
            returncode = process.wait()
    seconds = time.monotonic() - started
    return Measurement(returncode, seconds, memory.cpu_seconds, memory.peak_bytes / 2**20,
                       started_at, started_at + seconds)


@dataclasses.dataclass
class NodeTime:
    """One component's execution in ML Metadata: when it started and ended (epoch seconds)."""

    node_id: str
    started_at: float
    ended_at: float

    @property
    def seconds(self) -> float:
        return self.ended_at - self.started_at


def node_times(metadata_path: str) -> List[NodeTime]:
    """Every execution in the ML Metadata SQLite file, by its node's id, in start order.

    TFX names each node's context `<pipeline>.<node id>` (context type `node`); an execution's
    create and last-update times are when the launcher registered it and when it recorded
    its outcome.
    """
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(connection)
    times = []
    for context in store.get_contexts_by_type("node"):
        node_id = context.name.split(".", 1)[-1]
        for execution in store.get_executions_by_context(context.id):
            times.append(NodeTime(node_id, execution.create_time_since_epoch / 1000,
                                  execution.last_update_time_since_epoch / 1000))
    return sorted(times, key=lambda t: t.started_at)

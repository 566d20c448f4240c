"""A run's own record in ML Metadata: which process runs it, how it ended, and runs that died.

TFX records executions, not processes: after Ctrl-C, SIGTERM or SIGKILL a run's executions stay
RUNNING for ever. `pipeline.ops.run.run_and_report` stamps its run's `pipeline_run` context with
the process (pid, its start time, host) as soon as the context exists, and its outcome at the end;
an interrupted run gets its RUNNING executions marked CANCELED. A run killed outright cannot do
that, so the next run (holding the run lock, so no other run is alive) and `tfxt runs list` (by
checking the recorded process) recognise such dead runs and report them as INTERRUPTED.
"""

import os
import socket
from typing import List, Optional

from ml_metadata.proto import metadata_store_pb2

from pipeline import mlmd

PID = "tfxt_pid"
PROCESS_STARTED = "tfxt_process_started"
HOST = "tfxt_host"
# RUNNING while the process runs it; then COMPLETE, FAILED or INTERRUPTED.
STATE = "tfxt_state"
INTERRUPTED = "INTERRUPTED"


def process_started(pid: int) -> Optional[float]:
    """When process `pid` started (seconds since the epoch), or None if there is no such process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def new_run_id(store, pipeline_name: str, before: List[str]) -> Optional[str]:
    """The run of `pipeline_name` that is not in `before` (the one this process started)."""
    new = [run_id for run_id in mlmd.run_ids(store, pipeline_name) if run_id not in before]
    return new[-1] if new else None


def stamp(store, run_id: str, state: str) -> None:
    """Records this process and `state` on the run's context."""
    context = store.get_context_by_type_and_name(mlmd.RUN_CONTEXT, run_id)
    properties = context.custom_properties
    properties[PID].int_value = os.getpid()
    properties[PROCESS_STARTED].double_value = process_started(os.getpid()) or 0.0
    properties[HOST].string_value = socket.gethostname()
    properties[STATE].string_value = state
    store.put_contexts([context])


def cancel_running(store, pipeline_name: str, run_id: str) -> List[str]:
    """Marks the run's RUNNING executions CANCELED and the run INTERRUPTED; returns their node ids."""
    context = store.get_context_by_type_and_name(mlmd.RUN_CONTEXT, run_id)
    canceled = []
    for execution in store.get_executions_by_context(context.id):
        if execution.last_known_state == metadata_store_pb2.Execution.RUNNING:
            execution.last_known_state = metadata_store_pb2.Execution.CANCELED
            canceled.append(execution)
    if canceled:
        store.put_executions(canceled)
    context.custom_properties[STATE].string_value = INTERRUPTED
    store.put_contexts([context])
    return [mlmd.execution_node_id(store, e, pipeline_name) for e in canceled]


def recorded_state(context) -> str:
    """The state the run's process recorded ('' for runs it never stamped)."""
    value = context.custom_properties.get(STATE)
    return value.string_value if value is not None else ""


def process_is_gone(context) -> Optional[bool]:
    """Whether the process that ran this run has ended; None if it cannot be told from here."""
    properties = context.custom_properties
    if PID not in properties or properties[HOST].string_value != socket.gethostname():
        return None
    started = process_started(properties[PID].int_value)
    # A reused pid belongs to a process that started later than the recorded one.
    return started is None or abs(started - properties[PROCESS_STARTED].double_value) > 1.0


def has_running_executions(store, run_id: str) -> bool:
    context = store.get_context_by_type_and_name(mlmd.RUN_CONTEXT, run_id)
    return any(e.last_known_state == metadata_store_pb2.Execution.RUNNING
               for e in store.get_executions_by_context(context.id))


def cancel_dead_runs(store, pipeline_name: str) -> List[str]:
    """Under the run lock: every other run still RUNNING is dead; cancel it. Returns its run ids."""
    dead = []
    for run_id in mlmd.run_ids(store, pipeline_name):
        context = store.get_context_by_type_and_name(mlmd.RUN_CONTEXT, run_id)
        # Runs no process stamped (an Airflow task, say) hold no lock: they may be alive.
        if (recorded_state(context) == "RUNNING" and process_is_gone(context) is not False
                and has_running_executions(store, run_id)):
            cancel_running(store, pipeline_name, run_id)
            dead.append(run_id)
    return dead

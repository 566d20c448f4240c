"""Runs the Trainer's `run_fn` on a real multi-process cluster on loopback.

Vertex AI Training starts one process per replica of each worker pool and sets
`TF_CONFIG` on each; this module does the same on one machine, so the
multi-process strategies are exercised for real (tests/test_cluster.py):

    tfxt cluster launch --strategy multi_worker_mirrored --workers 2 \\
        --pipeline-root outputs/pipeline_root/penguin --serving-model-dir /tmp/model

`one_device` and `mirrored` run as a one-task "cluster" (a chief), the same
way. Every task runs `python -m pipeline.training.cluster <job.json>`, which calls
the configured `run_fn` (default `models.trainer.run_fn`) with a TFX `FnArgs` built from Transform's outputs.
The launcher watches all tasks: the run succeeds when the training tasks exit
cleanly, and fails at once, naming the task, when any task dies (a dead
worker would otherwise leave its peers waiting forever). Every task runs in
its own process group, which is killed when the launcher returns, however it
returns.
"""

import contextlib
import dataclasses
import glob
import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from typing import Any, Dict, List, Optional, Sequence

from pipeline.config import STRATEGIES, ConfigError, Hyperparameters, PipelineConfig

MULTI_PROCESS = ("multi_worker_mirrored", "parameter_server")
POLL_SECONDS = 0.5
DEFAULT_TIMEOUT_SECONDS = 900


class ClusterError(RuntimeError):
    """A cluster task failed or the cluster ran out of time."""


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    """What every task needs to call `run_fn`: Transform's outputs and the training settings."""

    transform_graph: str
    transformed_examples: str
    serving_model_dir: str
    model_run_dir: str
    strategy: str
    hyperparameters: Hyperparameters = Hyperparameters()
    seed: int = 42
    deterministic_ops: bool = True
    # Logical CPU devices per task: `mirrored` makes one replica per device,
    # so data parallelism can be tried on a machine without GPUs.
    cpu_devices: int = 1
    # Dotted path of the Trainer's entry point (the config's run_fn).
    run_fn: str = "models.trainer.run_fn"

    def custom_config(self) -> Dict[str, Any]:
        hp = self.hyperparameters
        return {"hyperparameters": hp.trainer_values(),
                "strategy": self.strategy, "seed": self.seed,
                "deterministic_ops": self.deterministic_ops}


@dataclasses.dataclass
class Task:
    """One running process of the cluster."""

    name: str
    process: subprocess.Popen
    log_path: str
    # Whether the run is done when this task exits 0 (training tasks), or the
    # task should run until stopped (parameter-server worker and ps tasks).
    trains: bool


def cluster_spec(strategy: str, workers: int, ps: int = 0) -> Dict[str, List[str]]:
    """Task type -> loopback addresses on free ports, for `strategy`.

    `multi_worker_mirrored` uses `workers` worker tasks (worker 0 is the chief);
    `parameter_server` uses one chief, `workers` workers and `ps` ps tasks;
    the single-process strategies use one chief.
    """
    if strategy in ("one_device", "mirrored"):
        if workers > 1 or ps:
            raise ConfigError(f"strategy {strategy!r} runs in one process: use --workers 1 and no ps.")
        counts = {"chief": 1}
    elif strategy == "multi_worker_mirrored":
        if workers < 1 or ps:
            raise ConfigError("multi_worker_mirrored needs at least 1 worker and no ps tasks.")
        counts = {"worker": workers}
    elif strategy == "parameter_server":
        if workers < 1 or ps < 1:
            raise ConfigError("parameter_server needs at least 1 worker and 1 ps task.")
        counts = {"chief": 1, "worker": workers, "ps": ps}
    else:
        raise ConfigError(f"Unknown strategy {strategy!r}.")
    ports = iter(free_ports(sum(counts.values())))
    return {task_type: [f"127.0.0.1:{next(ports)}" for _ in range(count)]
            for task_type, count in counts.items()}


def free_ports(count: int) -> List[int]:
    """`count` distinct ports that are free on loopback now (held open together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def transform_outputs(pipeline_root: str) -> Dict[str, str]:
    """The newest Transform outputs of a pipeline run: transform_graph and transformed_examples URIs."""
    found = {}
    for key in ("transform_graph", "transformed_examples"):
        ids = [p for p in glob.glob(os.path.join(pipeline_root, "Transform", key, "*"))
               if os.path.basename(p).isdigit()]
        if not ids:
            raise ConfigError(f"No Transform {key} under {pipeline_root}; run the pipeline first.")
        found[key] = max(ids, key=lambda p: int(os.path.basename(p)))
    return found


def start_cluster(job: TrainingJob, cluster: Dict[str, List[str]], work_dir: str) -> List[Task]:
    """Starts one process per task, each with its TF_CONFIG and its log file in `work_dir`."""
    os.makedirs(work_dir, exist_ok=True)
    job_path = os.path.join(work_dir, "job.json")
    with open(job_path, "w") as f:
        json.dump(dataclasses.asdict(job), f)
    tasks = []
    try:
        for task_type, addresses in cluster.items():
            for index in range(len(addresses)):
                name = f"{task_type}-{index}"
                env = {**os.environ,
                       "TF_CONFIG": json.dumps({"cluster": cluster,
                                                "task": {"type": task_type, "index": index}})}
                log_path = os.path.join(work_dir, f"{name}.log")
                with open(log_path, "w") as log:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "pipeline.training.cluster", job_path], env=env,
                        stdout=log, stderr=subprocess.STDOUT, cwd=work_dir, start_new_session=True)
                trains = not (job.strategy == "parameter_server" and task_type in ("worker", "ps"))
                tasks.append(Task(name, process, log_path, trains))
    except BaseException:
        stop_cluster(tasks)
        raise
    return tasks


def wait_for_cluster(tasks: Sequence[Task], timeout_seconds: float) -> None:
    """Returns when every training task exited 0; raises ClusterError naming the first failed task.

    A serving task (parameter-server worker or ps) that exits at all has
    failed, since it should serve until the chief is done.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        failed = [task for task in tasks if task.process.poll() is not None
                  and (task.process.returncode != 0 or not task.trains)]
        if failed:
            raise ClusterError("; ".join(_failure(task) for task in failed))
        if all(task.process.poll() == 0 for task in tasks if task.trains):
            return
        if time.monotonic() > deadline:
            running = [task.name for task in tasks if task.process.poll() is None]
            raise ClusterError(f"The cluster did not finish within {timeout_seconds:.0f} s "
                               f"(still running: {', '.join(running)}); logs are in "
                               f"{os.path.dirname(tasks[0].log_path)}.")
        time.sleep(POLL_SECONDS)


def stop_cluster(tasks: Sequence[Task], grace_seconds: float = 5.0) -> None:
    """Terminates each task's process group, then kills what is left, and reaps every process."""
    for task in tasks:
        _signal_group(task.process, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for task in tasks:
        try:
            task.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(task.process, signal.SIGKILL)
        task.process.wait()


def run_cluster(job: TrainingJob, workers: int, ps: int, work_dir: str,
                timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> str:
    """Trains `job` on a loopback cluster and returns the chief's serving model directory."""
    with _sigterm_unwinds():
        tasks = start_cluster(job, cluster_spec(job.strategy, workers, ps), work_dir)
        try:
            wait_for_cluster(tasks, timeout_seconds)
        finally:
            stop_cluster(tasks)
    if not os.path.isfile(os.path.join(job.serving_model_dir, "saved_model.pb")):
        raise ClusterError(f"The cluster finished but wrote no SavedModel to {job.serving_model_dir}.")
    return job.serving_model_dir


@contextlib.contextmanager
def _sigterm_unwinds():
    """While open, SIGTERM (a scheduler or `kill`) raises SystemExit(143) as Ctrl-C raises
    KeyboardInterrupt, so cleanup stops the tasks, which run in their own sessions and would
    outlive us. Python sets handlers only in the main thread; elsewhere this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_task(job_path: str) -> None:
    """One task's work (`python -m pipeline.training.cluster <job.json>`): `train_job` on the job file."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    with open(job_path) as f:
        values = json.load(f)
    values["hyperparameters"] = Hyperparameters(
        **{**values["hyperparameters"], "hidden_units": tuple(values["hyperparameters"]["hidden_units"])})
    train_job(TrainingJob(**values))


def train_job(job: TrainingJob) -> None:
    """Calls the job's `run_fn` (by dotted path, as TFX does) in this process, with FnArgs from `job`.

    Not tfx.components.trainer.fn_args_utils: importing any tfx.components
    module imports every component (a minute of CPU on a busy machine), and
    FnArgs and DataAccessor are plain records of the fields run_fn reads.
    """
    import tensorflow as tf
    from tfx_bsl.public import tfxio

    module_name, function_name = job.run_fn.rsplit(".", 1)
    run_fn = getattr(importlib.import_module(module_name), function_name)

    if job.cpu_devices > 1:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * job.cpu_devices)

    def dataset_factory(file_pattern, options, schema):
        return tfxio.TFExampleRecord(file_pattern, telemetry_descriptors=["Trainer"],
                                     schema=schema).TensorFlowDataset(options)

    run_fn(types.SimpleNamespace(
        train_files=[os.path.join(job.transformed_examples, "Split-train", "*")],
        eval_files=[os.path.join(job.transformed_examples, "Split-eval", "*")],
        train_steps=job.hyperparameters.train_steps,
        eval_steps=job.hyperparameters.eval_steps,
        transform_output=job.transform_graph,
        transform_graph_path=job.transform_graph,
        data_accessor=types.SimpleNamespace(tf_dataset_factory=dataset_factory),
        serving_model_dir=job.serving_model_dir,
        model_run_dir=job.model_run_dir,
        custom_config=job.custom_config(),
        hyperparameters=None,
        base_model=None,  # loopback clusters train cold; warm start is the pipeline's (Trainer base_model)
    ))


def launch(strategy: str, pipeline_root: str, serving_model_dir: str,
           config: Optional[PipelineConfig] = None, workers: Optional[int] = None, ps: Optional[int] = None,
           cpu_devices: int = 1, train_steps: Optional[int] = None, work_dir: Optional[str] = None,
           timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> str:
    """Trains on a loopback cluster from a pipeline_root's Transform outputs (`tfxt cluster launch`).

    Returns the work dir (task logs and the job file). Raises ConfigError or ClusterError.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}.")
    config = config or PipelineConfig()
    hp = config.hyperparameters
    if train_steps:
        hp = dataclasses.replace(hp, train_steps=train_steps)
    serving_model_dir = os.path.abspath(serving_model_dir)
    work_dir = os.path.abspath(work_dir or serving_model_dir + ".cluster")
    job = TrainingJob(**transform_outputs(os.path.abspath(pipeline_root)),
                      serving_model_dir=serving_model_dir,
                      model_run_dir=os.path.join(work_dir, "model_run"),
                      strategy=strategy, hyperparameters=hp, seed=config.seed,
                      deterministic_ops=config.deterministic_ops, cpu_devices=cpu_devices,
                      run_fn=config.run_fn)
    ps = ps if ps is not None else (1 if strategy == "parameter_server" else 0)
    workers = workers or (2 if strategy in MULTI_PROCESS else 1)
    run_cluster(job, workers, ps, work_dir, timeout_seconds)
    return work_dir


def _failure(task: Task) -> str:
    code = task.process.returncode
    how = (f"was killed by {signal.Signals(-code).name}" if code < 0
           else f"exited with code {code}" if code else "exited while the chief was still training")
    return f"{task.name} {how}. Last lines of {task.log_path}:\n{_tail(task.log_path)}"


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    # Only while the leader is unreaped: afterwards its pid (the group id) may be reused.
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    # The process entry of one task, started by `start_cluster`; not a user command.
    run_task(sys.argv[1])

"""tf.distribute strategies chosen by name from the config, checked against TF_CONFIG.

The Trainer's `run_fn` (models/trainer.py) calls `make_strategy(name)` and builds
the model inside its scope. Multi-process strategies read the cluster from the
`TF_CONFIG` environment variable, which Vertex AI Training sets on every
replica and `pipeline.training.cluster` sets for a loopback cluster:

- `one_device`, `mirrored`: one process; TF_CONFIG may name at most one task.
- `multi_worker_mirrored`: synchronous all-reduce; every task is a `worker`
  (or one `chief` plus workers) and every task runs the training program.
- `parameter_server`: one `chief` runs the training program with a
  `ClusterCoordinator`; `worker` and `ps` tasks only serve (`serve_forever`).

A TF_CONFIG that does not fit the chosen strategy raises `ConfigError` before
any TensorFlow runtime is started, so a misconfigured job fails at once with
one message instead of hanging while it waits for peers.
"""

import json
import os
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from pipeline.config import STRATEGIES, ConfigError

SINGLE_PROCESS = ("one_device", "mirrored")
# Tasks of a parameter-server cluster that only run a tf.distribute.Server.
SERVER_TASKS = ("worker", "ps")


def read_tf_config(environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The parsed TF_CONFIG (empty when unset)."""
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "")
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}): {text[:200]}") from None
    if not isinstance(value, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'.")
    return value


def check_tf_config(strategy: str, tf_config: Mapping[str, Any]) -> None:
    """Raises ConfigError when `tf_config` does not describe a cluster `strategy` can use."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"Unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}.")
    cluster = tf_config.get("cluster") or {}
    task = tf_config.get("task") or {}
    sizes = {task_type: len(addresses) for task_type, addresses in cluster.items()}
    total = sum(sizes.values())
    if strategy in SINGLE_PROCESS:
        if total > 1:
            raise ConfigError(
                f"strategy {strategy!r} trains in one process, but TF_CONFIG describes a cluster of "
                f"{total} tasks ({_describe(sizes)}); choose multi_worker_mirrored or "
                "parameter_server, or unset TF_CONFIG.")
        return
    if not cluster:
        raise ConfigError(
            f"strategy {strategy!r} needs a cluster, but TF_CONFIG is unset or has no 'cluster'; "
            "set TF_CONFIG on every task (Vertex AI Training does this for each worker pool; "
            "`python -m pipeline.training.cluster` does it on loopback), or choose one_device or mirrored.")
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise ConfigError(f"TF_CONFIG task type {task_type!r} is not in its cluster ({_describe(sizes)}).")
    if not isinstance(task_index, int) or not 0 <= task_index < sizes[task_type]:
        raise ConfigError(f"TF_CONFIG task index {task_index!r} is out of range for "
                          f"{sizes[task_type]} {task_type!r} task(s).")
    if strategy == "multi_worker_mirrored":
        extra = sorted(set(cluster) - {"chief", "worker"})
        if extra:
            raise ConfigError(
                f"strategy 'multi_worker_mirrored' uses only chief and worker tasks, but TF_CONFIG "
                f"also has {', '.join(extra)}; drop them or choose parameter_server.")
        if sizes.get("chief", 0) > 1:
            raise ConfigError("TF_CONFIG may name at most one chief.")
        return
    missing = [name for name in ("chief", "worker", "ps") if not sizes.get(name)]
    if missing:
        raise ConfigError(
            f"strategy 'parameter_server' needs one chief, at least one worker and at least one ps "
            f"task, but TF_CONFIG has no {', '.join(missing)} ({_describe(sizes)}).")
    if sizes["chief"] != 1:
        raise ConfigError(
            f"strategy 'parameter_server' needs exactly one chief, TF_CONFIG has {sizes['chief']}.")
    extra = sorted(set(cluster) - {"chief", "worker", "ps"})
    if extra:
        raise ConfigError(f"strategy 'parameter_server' does not use task type(s) {', '.join(extra)}.")


def is_server_task(strategy: str, tf_config: Optional[Mapping[str, Any]] = None) -> bool:
    """Whether this process only serves (a worker or ps of a parameter-server cluster)."""
    tf_config = read_tf_config() if tf_config is None else tf_config
    task_type = (tf_config.get("task") or {}).get("type")
    return strategy == "parameter_server" and task_type in SERVER_TASKS


def serve_forever(tf_config: Optional[Mapping[str, Any]] = None) -> None:
    """Runs this task's tf.distribute.Server until the process is stopped.

    The chief's coordinator sends the work; the job ends when the chief ends.
    """
    tf_config = read_tf_config() if tf_config is None else tf_config
    check_tf_config("parameter_server", tf_config)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(
        resolver.cluster_spec(), job_name=resolver.task_type, task_index=resolver.task_id,
        protocol=resolver.rpc_layer or "grpc", start=True)
    server.join()


def make_strategy(name: str, tf_config: Optional[Mapping[str, Any]] = None) -> tf.distribute.Strategy:
    """The strategy called `name` (one of `pipeline.config.STRATEGIES`), checked against TF_CONFIG.

    Raises:
      ConfigError: for an unknown name, or a TF_CONFIG that does not fit the strategy.
    """
    tf_config = read_tf_config() if tf_config is None else tf_config
    check_tf_config(name, tf_config)
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.OneDeviceStrategy(gpus[0].name)
        # Without a GPU the one device is the CPU, where TensorFlow's default strategy already
        # runs everything. OneDeviceStrategy("/cpu:0") computes the same but puts a
        # multi-device iterator between tf.data and every step: with it, 300 default steps
        # took 2.3 ms each against 1.0 ms, and 20 validation steps 309 ms against 89 ms
        # (BENCHMARKS.md, "Goal 4: the Trainer's ms/step").
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # All GPUs; without GPUs, all logical CPUs (one unless split, see pipeline.training.cluster).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if is_server_task(name, tf_config):
        raise ConfigError("In a parameter_server cluster only the chief trains; worker and ps tasks "
                          "call pipeline.training.distribution.serve_forever() instead.")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return tf.distribute.experimental.ParameterServerStrategy(resolver)


def is_parameter_server(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process should write the serving model (others write to scratch)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    # Without an explicit chief, worker 0 is the chief (MultiWorkerMirroredStrategy).
    return resolver.task_type == "worker" and resolver.task_id == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def task_name(strategy: tf.distribute.Strategy) -> str:
    """'chief', 'worker-1', ... for logs and scratch directory names."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "chief"
    return f"{resolver.task_type}-{resolver.task_id}"


def _describe(sizes: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {task_type}" for task_type, count in sorted(sizes.items())) or "no tasks"

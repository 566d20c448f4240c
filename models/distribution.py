"""tf.distribute strategies chosen by name from the config.

The Trainer's `run_fn` builds the model inside `make_strategy(name).scope()`.
"""

import tensorflow as tf

from pipeline.config import STRATEGIES, ConfigError


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called `name` (one of `pipeline.config.STRATEGIES`)."""
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "parameter_server":
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        return tf.distribute.experimental.ParameterServerStrategy(resolver)
    raise ConfigError(f"Unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}.")


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

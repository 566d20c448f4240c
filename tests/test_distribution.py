"""Strategy selection and TF_CONFIG checks (pipeline/training/distribution.py), without starting a cluster."""

import json

import numpy as np
import pytest
import tensorflow as tf

from models import trainer
from pipeline.config import ConfigError, Hyperparameters, load_config
from pipeline.training import cluster, distribution
from tests import tiny_training

MWMS_CLUSTER = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
PS_CLUSTER = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"], "ps": ["127.0.0.1:4"]}


def tf_config(cluster, task_type, index=0):
    return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def test_unknown_strategy_is_rejected_by_make_strategy_and_config(tmp_path):
    with pytest.raises(ConfigError, match="Unknown strategy 'horovod'.*multi_worker_mirrored"):
        distribution.make_strategy("horovod", tf_config={})
    with pytest.raises(ConfigError, match="Unknown strategy 'horovod'"):
        load_config(overrides={"strategy": "horovod"}, require_schema=False)


@pytest.mark.parametrize("strategy, config", [
    ("one_device", {}),
    ("mirrored", tf_config({"chief": ["127.0.0.1:1"]}, "chief")),  # what Vertex sets for one replica
    ("multi_worker_mirrored", tf_config(MWMS_CLUSTER, "worker", 1)),
    ("multi_worker_mirrored", tf_config({"chief": ["a:1"], "worker": ["b:1"]}, "chief")),
    ("parameter_server", tf_config(PS_CLUSTER, "chief")),
    ("parameter_server", tf_config(PS_CLUSTER, "ps")),
])
def test_consistent_tf_config_is_accepted(strategy, config):
    distribution.check_tf_config(strategy, config)


@pytest.mark.parametrize("strategy, config, message", [
    ("multi_worker_mirrored", {}, "needs a cluster, but TF_CONFIG is unset"),
    ("parameter_server", {}, "needs a cluster"),
    ("parameter_server", tf_config(MWMS_CLUSTER, "worker"), "has no chief, ps"),
    ("parameter_server", tf_config({"chief": ["a:1"], "worker": ["b:1"]}, "chief"), "has no ps"),
    ("multi_worker_mirrored", tf_config(PS_CLUSTER, "worker"), "also has ps"),
    ("mirrored", tf_config(MWMS_CLUSTER, "worker"), "trains in one process.*2 worker"),
    ("one_device", tf_config(PS_CLUSTER, "chief"), "cluster of 4 tasks"),
    ("multi_worker_mirrored", tf_config(MWMS_CLUSTER, "chief"), "task type 'chief' is not in its cluster"),
    ("multi_worker_mirrored", tf_config(MWMS_CLUSTER, "worker", 2), "index 2 is out of range"),
])
def test_inconsistent_tf_config_is_a_clear_error(strategy, config, message):
    with pytest.raises(ConfigError, match=message):
        distribution.check_tf_config(strategy, config)


def test_make_strategy_reads_and_checks_tf_config_from_the_environment(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config({"chief": ["a:1"], "worker": ["b:1"]}, "chief")))
    with pytest.raises(ConfigError, match="has no ps"):
        distribution.make_strategy("parameter_server")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        distribution.make_strategy("one_device")


def test_one_device_on_a_cpu_is_the_default_strategy_and_trains_the_same_model(monkeypatch):
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("with a GPU, one_device is OneDeviceStrategy on that GPU")
    assert distribution.make_strategy("one_device", tf_config={}) is tf.distribute.get_strategy()
    args = trainer.TrainingArgs(Hyperparameters(batch_size=8, hidden_units=(4,), steps_per_execution=2),
                                deterministic_ops=False)

    def train():
        return trainer.train(args, tiny_training.TransformOutput(), tiny_training.dataset,
                             tiny_training.dataset, train_steps=6, eval_steps=2)

    default = train()
    monkeypatch.setattr(distribution, "make_strategy", lambda name: tf.distribute.OneDeviceStrategy("/cpu:0"))
    one_device = train()
    assert isinstance(one_device.distribute_strategy, tf.distribute.OneDeviceStrategy)
    assert not isinstance(default.distribute_strategy, tf.distribute.OneDeviceStrategy)
    for a, b in zip(default.get_weights(), one_device.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_only_parameter_server_workers_and_ps_serve():
    assert distribution.is_server_task("parameter_server", tf_config(PS_CLUSTER, "worker", 1))
    assert distribution.is_server_task("parameter_server", tf_config(PS_CLUSTER, "ps"))
    assert not distribution.is_server_task("parameter_server", tf_config(PS_CLUSTER, "chief"))
    assert not distribution.is_server_task("multi_worker_mirrored", tf_config(MWMS_CLUSTER, "worker", 1))


def test_cluster_layouts_and_bad_requests():
    spec = cluster.cluster_spec("parameter_server", workers=2, ps=1)
    assert {k: len(v) for k, v in spec.items()} == {"chief": 1, "worker": 2, "ps": 1}
    addresses = [a for v in spec.values() for a in v]
    assert len(set(addresses)) == 4 and all(a.startswith("127.0.0.1:") for a in addresses)
    with pytest.raises(ConfigError, match="at least 1 worker and 1 ps"):
        cluster.cluster_spec("parameter_server", workers=2, ps=0)
    with pytest.raises(ConfigError, match="runs in one process"):
        cluster.cluster_spec("mirrored", workers=2)


def fake_task(tmp_path, name, code, trains=True):
    """A cluster task that runs `code` in Python, started the way the launcher starts tasks."""
    import subprocess
    import sys

    log_path = str(tmp_path / f"{name}.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return cluster.Task(name, process, log_path, trains)


def test_launcher_names_the_task_that_failed_and_shows_its_log(tmp_path):
    tasks = [fake_task(tmp_path, "worker-0", "import time; time.sleep(60)"),
             fake_task(tmp_path, "worker-1", "print('no data for me'); raise SystemExit(3)")]
    try:
        with pytest.raises(cluster.ClusterError, match="(?s)worker-1 exited with code 3.*no data for me"):
            cluster.wait_for_cluster(tasks, timeout_seconds=30)
    finally:
        cluster.stop_cluster(tasks)
    assert tasks[0].process.returncode == -15  # the sleeping peer was terminated, not left behind


def test_a_serving_task_that_exits_fails_the_run_and_a_slow_cluster_times_out(tmp_path):
    tasks = [fake_task(tmp_path, "chief-0", "import time; time.sleep(60)"),
             fake_task(tmp_path, "ps-0", "pass", trains=False)]
    try:
        with pytest.raises(cluster.ClusterError, match="ps-0 exited while the chief was still training"):
            cluster.wait_for_cluster(tasks, timeout_seconds=30)
    finally:
        cluster.stop_cluster(tasks)
    tasks = [fake_task(tmp_path, "worker-0", "import time; time.sleep(60)")]
    try:
        with pytest.raises(cluster.ClusterError, match="did not finish within 1 s.*still running: worker-0"):
            cluster.wait_for_cluster(tasks, timeout_seconds=1)
    finally:
        cluster.stop_cluster(tasks)
    assert tasks[0].process.returncode is not None


def test_launch_without_transform_output_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from runners.cli.main import main

    result = CliRunner().invoke(main, ["cluster", "launch", "--strategy", "parameter_server",
                                       "--pipeline-root", str(tmp_path),
                                       "--serving-model-dir", str(tmp_path / "model")])
    assert result.exit_code == 1
    assert "No Transform transform_graph under" in result.output

"""Real multi-process training clusters on loopback (pipeline/training/cluster.py), one per strategy.

Each cluster trains the template's model with `models.trainer.run_fn` on the
Transform output of the shared `pushed_pipeline` run, and the chief's
SavedModel must load and predict the bundled penguins better than chance.
Every process is bounded by the launcher's timeout and reaped afterwards.
"""

import csv
import glob
import os
import signal
import time

import pytest

from pipeline.config import Hyperparameters
from pipeline.training import cluster
from pipeline.training.cluster import ClusterError, TrainingJob
from tests.conftest import DATA_ROOT

pytestmark = pytest.mark.e2e

# Few steps keep each cluster within tens of seconds; enough to beat chance. 10 steps per
# execution do not divide 25, so every strategy also runs Keras's shorter last execution (5).
HYPERPARAMETERS = Hyperparameters(train_steps=25, eval_steps=5, batch_size=32, learning_rate=0.03,
                                  steps_per_execution=10)
CLUSTER_TIMEOUT_SECONDS = 420


@pytest.fixture(scope="module")
def transform_outputs(pushed_pipeline):
    return cluster.transform_outputs(pushed_pipeline.config.pipeline_root)


def make_job(transform_outputs, directory, strategy, **overrides) -> TrainingJob:
    values = dict(serving_model_dir=os.path.join(directory, "serving_model"),
                  model_run_dir=os.path.join(directory, "model_run"), strategy=strategy,
                  hyperparameters=HYPERPARAMETERS, **transform_outputs)
    values.update(overrides)
    return TrainingJob(**values)


def penguin_rows():
    rows = []
    for path in sorted(glob.glob(os.path.join(DATA_ROOT, "span-*", "*.csv"))):
        with open(path) as f:
            rows.extend(csv.DictReader(f))
    return rows


def accuracy_of(serving_model_dir) -> float:
    """The SavedModel's accuracy on the bundled data through its `serving_raw` signature."""
    import tensorflow as tf

    from models import features
    from serving import payloads

    rows = penguin_rows()
    inputs = {k: tf.constant(v) for k, v in payloads.raw_columns(
        [{k: v for k, v in r.items() if v != "NA"} for r in rows]).items()}
    outputs = tf.saved_model.load(serving_model_dir).signatures["serving_raw"](**inputs)
    predicted = [p.decode() for p in outputs["predicted_class"].numpy()]
    assert outputs["scores"].shape == (len(rows), 3)
    return sum(p == r[features.LABEL_KEY] for p, r in zip(predicted, rows, strict=True)) / len(rows)


def steps_trained(serving_model_dir) -> int:
    """The optimizer's step count saved with the model: the training steps that ran."""
    import tensorflow as tf

    return int(tf.saved_model.load(serving_model_dir).optimizer.iterations.numpy())


def assert_reaped(tasks):
    """Every task was waited for and nothing is left in its process group."""
    for task in tasks:
        assert task.process.returncode is not None, f"{task.name} is still running"
        with pytest.raises(ProcessLookupError):
            os.killpg(task.process.pid, 0)


@pytest.mark.parametrize("strategy, workers, ps", [
    ("multi_worker_mirrored", 2, 0),  # two workers, all-reduce
    ("parameter_server", 2, 1),  # a chief, two workers, one ps
])
def test_cluster_trains_a_model_that_loads_and_predicts(transform_outputs, tmp_path, strategy, workers, ps):
    job = make_job(transform_outputs, str(tmp_path), strategy)
    tasks = cluster.start_cluster(job, cluster.cluster_spec(strategy, workers, ps), str(tmp_path / "logs"))
    try:
        cluster.wait_for_cluster(tasks, CLUSTER_TIMEOUT_SECONDS)
    finally:
        cluster.stop_cluster(tasks)
    assert_reaped(tasks)
    assert sorted(t.name for t in tasks) == sorted(
        [f"worker-{i}" for i in range(workers)] + [f"ps-{i}" for i in range(ps)]
        + (["chief-0"] if strategy == "parameter_server" else []))
    # Only the chief wrote the serving model; the other workers wrote to scratch.
    assert os.listdir(tmp_path / "serving_model")
    assert accuracy_of(job.serving_model_dir) > 0.6
    assert steps_trained(job.serving_model_dir) == HYPERPARAMETERS.train_steps
    leftovers = glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "tfxt-worker-*"))
    assert not [p for p in leftovers if os.path.getmtime(p) > time.time() - CLUSTER_TIMEOUT_SECONDS]


def test_mirrored_trains_on_two_cpu_replicas_with_a_doubled_global_batch(transform_outputs, tmp_path):
    job = make_job(transform_outputs, str(tmp_path), "mirrored", cpu_devices=2)
    cluster.run_cluster(job, workers=1, ps=0, work_dir=str(tmp_path / "logs"),
                        timeout_seconds=CLUSTER_TIMEOUT_SECONDS)
    assert accuracy_of(job.serving_model_dir) > 0.6
    assert steps_trained(job.serving_model_dir) == HYPERPARAMETERS.train_steps
    with open(tmp_path / "logs" / "chief-0.log") as f:
        log = f.read()
    assert (f"on 2 replica(s), global batch size {2 * HYPERPARAMETERS.batch_size}, 25 steps, "
            "10 per execution") in log


def test_a_worker_killed_mid_training_fails_the_run_naming_it(transform_outputs, tmp_path):
    # Many steps: the cluster would train for long after the kill if nothing noticed.
    job = make_job(transform_outputs, str(tmp_path), "multi_worker_mirrored",
                   hyperparameters=Hyperparameters(train_steps=1_000_000, eval_steps=1))
    work_dir = tmp_path / "logs"
    tasks = cluster.start_cluster(job, cluster.cluster_spec("multi_worker_mirrored", 2), str(work_dir))
    try:
        victim = next(t for t in tasks if t.name == "worker-1")
        deadline = time.monotonic() + CLUSTER_TIMEOUT_SECONDS
        while "training with" not in (work_dir / "worker-1.log").read_text():
            assert time.monotonic() < deadline, "worker-1 never started training"
            assert victim.process.poll() is None, (work_dir / "worker-1.log").read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(2)
        os.killpg(victim.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.raises(ClusterError, match="worker-1 was killed by SIGKILL") as error:
            cluster.wait_for_cluster(tasks, timeout_seconds=120)
        assert time.monotonic() - killed_at < 30
        assert "worker-1.log" in str(error.value)
    finally:
        cluster.stop_cluster(tasks)
    assert_reaped(tasks)


def test_sigterm_to_the_launcher_stops_every_task(pushed_pipeline, tmp_path):
    """A scheduler's SIGTERM must not orphan the tasks, which run in their own sessions."""
    import subprocess
    import sys

    work_dir = tmp_path / "logs"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "runners.cli", "cluster", "launch", "--strategy", "mirrored",
         "--pipeline-root", pushed_pipeline.config.pipeline_root, "--train-steps", "1000000",
         "--serving-model-dir", str(tmp_path / "serving_model"), "--work-dir", str(work_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    chief_log = work_dir / "chief-0.log"
    try:
        deadline = time.monotonic() + CLUSTER_TIMEOUT_SECONDS
        while not chief_log.exists() or "training with" not in chief_log.read_text():
            assert time.monotonic() < deadline, "the chief never started training"
            assert launcher.poll() is None, launcher.communicate()[0][-3000:]
            time.sleep(0.5)
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 128 + signal.SIGTERM
    job_path = str(work_dir / "job.json")
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if job_path.encode() in f.read():
                    left.append(pid)
        except OSError:
            pass  # exited while we looked
    assert not left, f"tasks outlived the launcher: {left}"

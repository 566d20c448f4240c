"""Orchestrators: the same `create_pipeline(config)` on Beam, Airflow, Kubeflow V2 / Vertex AI
and through the tfx CLI.

On Python 3.13 (TFX 1.21) kfp and Airflow are not installed, because TFX 1.21 declares them
only for older Pythons; the tests that need them skip there and say why.

Fast tests cover the config section, the resolved Beam arguments and the submit
checks. One `tfx pipeline compile --engine=vertex` feeds the Kubeflow V2 structure
tests and the Vertex dry run.
End-to-end tests run the pipeline for real with BeamDagRunner, then through the
tfx CLI's local engine on the same outputs (cached), and as an Airflow DAG.
"""

import dataclasses
import importlib.util
import io
import json
import os
import subprocess
import sys

import pytest
import yaml

from pipeline.config import ConfigError, load_config
from pipeline.ops import vertex
from pipeline.orchestration import DIRECT_RUNNER, beam_pipeline_args
from tests.conftest import DATA_ROOT, REPO_ROOT, RUN_TIMEOUT_SECONDS, run_pipeline, write_config

# Small but still blessed at the default min_accuracy; saves a minute per run.
FAST_TRAINING = {"hyperparameters": {"train_steps": 100}}
DATAFLOW = {"beam_runner": "DataflowRunner", "project": "my-project", "region": "europe-west4",
            "temp_location": "gs://my-bucket/tmp", "machine_type": "n2-standard-8"}
VERTEX_CONFIG = {
    "output_dir": "gs://my-bucket/tfxt", "data_root": "gs://my-bucket/data/penguins",
    "schema_path": "gs://my-bucket/schema/schema.pbtxt",
    "orchestration": {"project": "my-project", "region": "europe-west4",
                      "image": "europe-west4-docker.pkg.dev/my-project/tfxt/pipeline:1",
                      "service_account": "runner@my-project.iam.gserviceaccount.com"},
}
PYTHON = "Python %d.%d" % sys.version_info[:2]
KFP_MISSING = f"kfp is not installed: TFX 1.21 installs kfp only below Python 3.12 (this is {PYTHON})"
requires_airflow = pytest.mark.skipif(
    importlib.util.find_spec("airflow") is None,
    reason=f"apache-airflow is not installed: TFX 1.21 supports Airflow only below Python 3.13 "
           f"(this is {PYTHON})")
PIPELINE_TASKS = {
    "CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator",
    "AnomaliesGate", "Transform", "Trainer", "Evaluator", "Pusher",
}


def config_with(**values):
    return load_config(overrides={"data_root": DATA_ROOT, **values}, base_dir=REPO_ROOT)


def run_runner(runner, args, cwd, config_path, timeout=RUN_TIMEOUT_SECONDS):
    env = {**os.environ, "TFXT_CONFIG": config_path}
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, runner), *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)


# --- config and Beam arguments ---------------------------------------------------------------

def test_direct_runner_args_come_from_config_and_extra_args_win():
    config = config_with(orchestration={"direct_running_mode": "multi_processing", "direct_num_workers": 2},
                         beam_args=["--direct_num_workers=3"])
    assert beam_pipeline_args(config) == [
        f"--runner={DIRECT_RUNNER}", "--direct_running_mode=multi_processing", "--direct_num_workers=2",
        "--setup_file=./setup.py", "--direct_num_workers=3"]


def test_direct_runner_is_beams_in_process_runner_on_every_beam_version():
    """Not --runner=DirectRunner, which tries Prism (downloaded at run time) first since Beam 2.68."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.runners.runner import create_runner

    options = PipelineOptions(beam_pipeline_args(config_with()))
    assert isinstance(create_runner(options.view_as(StandardOptions).runner), FnApiRunner)


def test_dataflow_args_are_resolved_from_config():
    args = beam_pipeline_args(config_with(orchestration=DATAFLOW))
    assert args == [
        "--runner=DataflowRunner", "--project=my-project", "--region=europe-west4",
        "--temp_location=gs://my-bucket/tmp", "--staging_location=gs://my-bucket/tmp/staging",
        "--machine_type=n2-standard-8", "--setup_file=./setup.py"]
    staged = config_with(orchestration={**DATAFLOW, "staging_location": "gs://other/staging"})
    assert "--staging_location=gs://other/staging" in beam_pipeline_args(staged)


@pytest.mark.parametrize("orchestration, message", [
    ({"beam_runner": "SparkRunner"}, "Unknown orchestration.beam_runner 'SparkRunner'"),
    ({"direct_running_mode": "threads"}, "Unknown orchestration.direct_running_mode"),
    ({**DATAFLOW, "temp_location": ""}, "orchestration.temp_location"),
    ({**DATAFLOW, "temp_location": "/tmp/local"}, "set it to a gs:// folder"),
    ({**DATAFLOW, "region": ""}, "orchestration.region is empty"),
])
def test_bad_orchestration_config_is_a_clear_error(orchestration, message):
    with pytest.raises(ConfigError, match=message):
        config_with(orchestration=orchestration)


def test_beam_runner_dry_run_prints_dataflow_args_and_runs_nothing(tmp_path):
    config_path = write_config(str(tmp_path), {"orchestration": DATAFLOW})
    result = run_runner("runners/beam_runner.py", ["--dry-run"], str(tmp_path), config_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == beam_pipeline_args(load_config(config_path))
    assert not (tmp_path / "outputs").exists()


def test_beam_runner_rejects_bad_config_before_starting(tmp_path):
    config_path = write_config(str(tmp_path), {"orchestration": {**DATAFLOW, "temp_location": ""}})
    result = run_runner("runners/beam_runner.py", [], str(tmp_path), config_path, timeout=120)
    assert result.returncode == 2
    assert "orchestration.temp_location" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()


# --- Vertex AI submit checks -----------------------------------------------------------------

@pytest.mark.parametrize("missing", ["project", "region"])
def test_vertex_submit_needs_project_and_region(missing):
    config = load_config(overrides={
        **VERTEX_CONFIG, "orchestration": {**VERTEX_CONFIG["orchestration"], missing: ""}})
    with pytest.raises(ConfigError, match=f"orchestration.{missing}"):
        vertex.check_submit(config)


def test_vertex_submit_needs_cloud_storage_paths(tmp_path):
    config = load_config(overrides={**VERTEX_CONFIG, "data_root": DATA_ROOT})
    with pytest.raises(ConfigError, match="data_root on Cloud Storage"):
        vertex.check_submit(config)


def test_runtime_parameter_overrides_map_to_pipeline_parameters():
    assert vertex.parameter_values({"train_steps": "500", "data_root": "gs://b/d"}) == {
        "train_args": '{"num_steps": 500}', "data_root": "gs://b/d"}
    with pytest.raises(ConfigError, match="Unknown runtime parameter 'epochs'"):
        vertex.parameter_values({"epochs": "3"})
    with pytest.raises(ConfigError, match="positive integer"):
        vertex.parameter_values({"train_steps": "-1"})


def test_kubeflow_runner_submit_without_region_fails_before_compiling(tmp_path):
    values = {**VERTEX_CONFIG, "orchestration": {**VERTEX_CONFIG["orchestration"], "region": ""}}
    config_path = str(tmp_path / "vertex.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(values, f)
    result = run_runner("runners/kubeflow_v2_runner.py", ["--submit", "--dry-run"], str(tmp_path),
                        config_path, timeout=120)
    assert result.returncode == 2
    assert "orchestration.region" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "build").exists()


# --- Kubeflow V2 compile through the tfx CLI, and the Vertex dry run -------------------------

def venv_env(**values):
    """The environment with this venv first on PATH: the tfx CLI runs `pip freeze` to find kfp."""
    bin_dir = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **values}


@pytest.fixture(scope="module")
def vertex_compiled(tmp_path_factory):
    """`tfx pipeline compile --engine=vertex` on runners/kubeflow_v2_runner.py, in a tmp directory.

    Every test that uses it skips where kfp is not installed.
    """
    if importlib.util.find_spec("kfp") is None:
        pytest.skip(KFP_MISSING)
    directory = tmp_path_factory.mktemp("vertex")
    config_path = str(directory / "vertex.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(VERTEX_CONFIG, f)
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "tfx"), "pipeline", "compile", "--engine=vertex",
         "--pipeline_path=" + os.path.join(REPO_ROOT, "runners", "kubeflow_v2_runner.py")],
        cwd=str(directory), env=venv_env(TFXT_CONFIG=config_path, HOME=str(directory)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:]
    assert "Pipeline penguin compiled successfully." in result.stdout
    template_path = str(directory / "build" / "penguin_pipeline.json")
    with open(template_path) as f:
        return template_path, json.load(f), load_config(config_path)


def pipeline_spec(job):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    return json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())


def test_kubeflow_v2_compile_has_every_task_and_dependency(vertex_compiled):
    _, job, _ = vertex_compiled
    tasks = pipeline_spec(job).root.dag.tasks
    assert PIPELINE_TASKS <= set(tasks)
    depends = {name: set(task.dependent_tasks) for name, task in tasks.items()}
    assert {"Transform", "ImportSchemaGen"} <= depends["Trainer"]
    assert "AnomaliesGate" in depends["Transform"]
    assert {"Trainer", "CsvExampleGen"} <= depends["Evaluator"]
    assert any("resolver" in name for name in depends["Evaluator"])
    assert {"Evaluator", "ServingModel"} <= depends["Pusher"]
    assert {"Evaluator", "Trainer"} <= depends["ServingModel"]
    assert depends["CsvExampleGen"] == {"RunRecord"}
    assert depends["RunRecord"] == set()


def test_kubeflow_v2_compile_uses_config_image_root_and_runtime_parameters(vertex_compiled):
    _, job, _ = vertex_compiled
    spec = pipeline_spec(job)
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"].values()
    images = {executor["container"]["image"] for executor in executors if "container" in executor}
    assert images == {VERTEX_CONFIG["orchestration"]["image"]}
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-bucket/tfxt/pipeline_root/penguin"
    assert job["runtimeConfig"]["parameterValues"] == {
        "data_root": "gs://my-bucket/data/penguins", "train_args": '{"num_steps": 300}'}
    tasks = spec.root.dag.tasks
    assert tasks["CsvExampleGen"].inputs.parameters["input_base"].component_input_parameter == "data_root"
    assert tasks["Trainer"].inputs.parameters["train_args"].component_input_parameter == "train_args"


def test_vertex_dry_run_prints_the_request_with_overrides(vertex_compiled):
    template_path, _, config = vertex_compiled
    stream = io.StringIO()
    assert vertex.submit(config, template_path, {"train_steps": "500"}, dry_run=True, stream=stream) is None
    printed = stream.getvalue()
    assert "in projects/my-project/locations/europe-west4" in printed
    assert f"Template: {template_path}" in printed
    request = json.loads(printed[printed.index("{"):])
    assert request["serviceAccount"] == "runner@my-project.iam.gserviceaccount.com"
    assert request["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-bucket/tfxt/pipeline_root/penguin"
    assert request["runtimeConfig"]["parameterValues"] == {
        "data_root": "gs://my-bucket/data/penguins", "train_args": '{"num_steps": 500}'}
    assert request["displayName"] == "penguin"


def test_vertex_dry_run_with_a_schedule_prints_a_one_at_a_time_schedule_request(vertex_compiled):
    template_path, _, config = vertex_compiled
    config = dataclasses.replace(config, lifecycle=dataclasses.replace(config.lifecycle, schedule="@daily"))
    stream = io.StringIO()
    assert vertex.submit(config, template_path, {}, dry_run=True, stream=stream) is None
    printed = stream.getvalue()
    marker = "Dry run: would create a PipelineJobSchedule (TZ=Etc/UTC 0 0 * * *) with:\n"
    assert marker in printed
    request = json.loads(printed[printed.index(marker) + len(marker):])
    assert request["parent"] == "projects/my-project/locations/europe-west4"
    schedule = request["schedule"]
    assert schedule["cron"] == "TZ=Etc/UTC 0 0 * * *"
    assert schedule["maxConcurrentRunCount"] == "1"
    job = schedule["createPipelineJobRequest"]["pipelineJob"]
    assert job["serviceAccount"] == "runner@my-project.iam.gserviceaccount.com"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-bucket/tfxt/pipeline_root/penguin"


def test_a_schedule_vertex_cannot_express_is_a_config_error(vertex_compiled):
    _, _, config = vertex_compiled
    config = dataclasses.replace(config, lifecycle=dataclasses.replace(config.lifecycle, schedule="@once"))
    with pytest.raises(ConfigError, match="lifecycle.schedule '@once'"):
        vertex.schedule_cron(config)


AIRFLOW_DAG_SHAPE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("airflow_runner", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = module.DAG
sensor = dag.task_dict.get("new_span_sensor")
print("DAG_SHAPE=" + json.dumps({
    "schedule": dag.schedule_interval, "max_active_runs": dag.max_active_runs,
    "roots": sorted(t.task_id for t in dag.roots),
    "sensor_downstream": sorted(sensor.downstream_task_ids) if sensor else None,
    "sensor_mode": sensor.mode if sensor else None}))
"""


@requires_airflow
def test_a_scheduled_airflow_dag_starts_with_a_sensor_for_a_new_span(tmp_path):
    # Without a schedule there is no sensor: test_airflow_dag_runs_every_task_and_pushes runs
    # that DAG on the bundled spans, which have no _SUCCESS marker and would wait forever.
    config_path = write_config(str(tmp_path), {"lifecycle": {"schedule": "@daily"}})
    home = tmp_path / "airflow"
    env = {**os.environ, "TFXT_CONFIG": config_path, "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db"}
    result = subprocess.run(
        [sys.executable, "-c", AIRFLOW_DAG_SHAPE, os.path.join(REPO_ROOT, "runners", "airflow_runner.py")],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:]
    shape = json.loads(result.stdout.split("DAG_SHAPE=")[-1].splitlines()[0])
    assert shape["schedule"] == "@daily" and shape["max_active_runs"] == 1
    # The sensor is the only root: no pipeline task starts before a new span is complete.
    assert shape["roots"] == ["new_span_sensor"] and shape["sensor_mode"] == "reschedule"
    assert {"CsvExampleGen", "RunRecord"} & set(shape["sensor_downstream"])


# --- End to end: Beam, then the tfx CLI on the same outputs, and Airflow ---------------------

@pytest.fixture(scope="module")
def beam_run(tmp_path_factory):
    run = run_pipeline(str(tmp_path_factory.mktemp("beam")), FAST_TRAINING, runner="runners/beam_runner.py")
    assert run.returncode == 0, run.output[-5000:]
    return run


def assert_pushed(config, summary):
    assert summary is not None and summary.succeeded, summary
    assert summary.blessed is True
    assert os.path.isfile(os.path.join(config.serving_model_dir, summary.pushed_version, "saved_model.pb"))


@pytest.mark.e2e
def test_beam_runner_runs_the_pipeline_and_pushes(beam_run):
    from pipeline.ops.summary import summarize

    summary = summarize(beam_run.config)
    assert {node.node_id for node in summary.nodes} >= PIPELINE_TASKS
    assert all(node.state == "COMPLETE" for node in summary.nodes if node.node_id in PIPELINE_TASKS)
    assert_pushed(beam_run.config, summary)


@pytest.mark.e2e
def test_tfx_cli_creates_and_runs_the_local_runner(beam_run, tmp_path):
    """`tfx pipeline create` + `tfx run create` on the local engine: a second, fully cached run."""
    from pipeline import mlmd
    from pipeline.ops.summary import summarize

    env = venv_env(TFXT_CONFIG=beam_run.config_path, HOME=str(tmp_path),
                   LOCAL_HOME=str(tmp_path / "tfx-local"))
    tfx = os.path.join(os.path.dirname(sys.executable), "tfx")
    commands = [
        [tfx, "pipeline", "create", "--engine=local", "--pipeline_path=runners/local_runner.py"],
        [tfx, "pipeline", "update", "--engine=local", "--pipeline_path=runners/local_runner.py"],
        [tfx, "run", "create", "--engine=local", "--pipeline_name=penguin"],
    ]
    outputs = []
    for command in commands:
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_SECONDS)
        assert result.returncode == 0, result.stdout[-5000:]
        outputs.append(result.stdout)
    assert 'Pipeline "penguin" created successfully.' in outputs[0]
    assert 'Pipeline "penguin" updated successfully.' in outputs[1]
    assert os.path.isfile(tmp_path / "tfx-local" / "penguin" / "pipeline_args.json")
    store = mlmd.open_store(beam_run.config)
    assert len(mlmd.run_ids(store, "penguin")) == 2
    summary = summarize(beam_run.config)
    assert summary.succeeded and {node.state for node in summary.nodes} <= {"CACHED", "COMPLETE"}
    assert summary.node("Trainer").state == "CACHED"


AIRFLOW_DAG_TEST = """
import importlib.util, json, sys
from airflow.utils import db
db.upgradedb()  # what `airflow db migrate` does
spec = importlib.util.spec_from_file_location("airflow_runner", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag_run = module.DAG.test()
print("TASK_STATES=" + json.dumps({ti.task_id: ti.state for ti in dag_run.get_task_instances()}))
"""


@pytest.mark.e2e
@requires_airflow
def test_airflow_dag_runs_every_task_and_pushes(tmp_path):
    config_path = write_config(str(tmp_path), FAST_TRAINING)
    home = tmp_path / "airflow"
    env = {**os.environ, "TFXT_CONFIG": config_path, "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    os.makedirs(home / "dags")
    result = subprocess.run(
        [sys.executable, "-c", AIRFLOW_DAG_TEST, os.path.join(REPO_ROOT, "runners", "airflow_runner.py")],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=RUN_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stdout[-5000:]
    states = json.loads(result.stdout.split("TASK_STATES=")[-1].splitlines()[0])
    assert PIPELINE_TASKS <= set(states)
    # Drift and decay too: they failed under Airflow while one artifact fed two validator inputs.
    monitoring = {"SpanStatisticsGen", "BaselineStatistics", "DriftValidator", "DriftGate", "ModelDecay"}
    assert monitoring <= set(states)
    assert set(states.values()) == {"success"}, (
        {task: state for task, state in states.items() if state != "success"}, result.stdout[-5000:])
    config = load_config(config_path)
    versions = os.listdir(config.serving_model_dir)
    assert len(versions) == 1
    assert os.path.isfile(os.path.join(config.serving_model_dir, versions[0], "saved_model.pb"))

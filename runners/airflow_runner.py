"""An Airflow DAG file: the pipeline as an Airflow DAG, built with TFX's AirflowDagRunner.

Airflow imports this file from its dags folder (copy or symlink it there, see
README); each component becomes one task. To run it once without a scheduler:

    airflow dags test penguin

The config comes from the file named by $TFXT_CONFIG (YAML or JSON), if set;
relative paths resolve against the repository, not Airflow's working directory.
With `lifecycle.schedule` set (e.g. "@daily"), the DAG runs on that schedule and starts with a
sensor that waits for a new complete span (`pipeline.ops.schedule`).
"""

import datetime
import os

from pipeline.config import load_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

# Airflow finds DAGs as module-level objects, so this file builds one when imported.
config = load_config(os.environ.get("TFXT_CONFIG"), base_dir=REPO_ROOT)
# ML Metadata's SQLite file is created on first use, but not its folder.
os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)


def build_dag(config):
    """The DAG; TFX is imported here, after `pipeline` (imported above) set the process's Keras."""
    from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

    from pipeline.ops.schedule import add_new_span_sensor
    from pipeline.orchestration import name_artifacts_by_component
    from pipeline.pipeline import create_pipeline

    # No schedule: triggered by hand (or `airflow dags test`).
    dag_config = {"schedule": config.lifecycle.schedule or None,
                  "start_date": datetime.datetime(2024, 1, 1), "catchup": False,
                  "max_active_runs": 1}
    dag = AirflowDagRunner(AirflowPipelineConfig(dag_config)).run(
        name_artifacts_by_component(create_pipeline(config)))
    return add_new_span_sensor(dag, config) if config.lifecycle.schedule else dag


DAG = build_dag(config)

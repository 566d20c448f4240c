"""An Airflow DAG file: the pipeline as an Airflow DAG, built with TFX's AirflowDagRunner.

Airflow imports this file from its dags folder (copy or symlink it there, see
README); each component becomes one task. To run it once without a scheduler:

    airflow dags test penguin

The config comes from the file named by $TFXT_CONFIG (YAML or JSON), if set;
relative paths resolve against the repository, not Airflow's working directory.
"""

import datetime
import os

from pipeline.config import load_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# Triggered by hand (or `airflow dags test`); set a schedule such as "@daily" to run it periodically.
AIRFLOW_DAG_CONFIG = {
    "schedule": None,
    "start_date": datetime.datetime(2024, 1, 1),
    "catchup": False,
}

# Airflow finds DAGs as module-level objects, so this file builds one when imported.
config = load_config(os.environ.get("TFXT_CONFIG"), base_dir=REPO_ROOT)
# ML Metadata's SQLite file is created on first use, but not its folder.
os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)


def build_dag(config):
    """The DAG; TFX is imported here, after `pipeline` (imported above) set the process's Keras."""
    from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

    from pipeline.orchestration import name_artifacts_by_component
    from pipeline.pipeline import create_pipeline

    return AirflowDagRunner(AirflowPipelineConfig(AIRFLOW_DAG_CONFIG)).run(
        name_artifacts_by_component(create_pipeline(config)))


DAG = build_dag(config)

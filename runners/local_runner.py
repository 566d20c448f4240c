"""Runs the pipeline in this process with TFX's LocalDagRunner (ML Metadata in SQLite).

    python runners/local_runner.py            # or: make run
    tfx pipeline create --engine=local --pipeline_path=runners/local_runner.py
    tfx run create --engine=local --pipeline_name=penguin

The config comes from the file named by $TFXT_CONFIG (YAML or JSON), if set.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # noqa: E402

from pipeline.config import load_config  # noqa: E402
from pipeline.pipeline import create_pipeline  # noqa: E402
from pipeline.run import run_and_report  # noqa: E402


def main() -> int:
    config = load_config(os.environ.get("TFXT_CONFIG"))
    return run_and_report(config, lambda: LocalDagRunner().run(create_pipeline(config)))


if __name__ == "__main__":
    sys.exit(main())

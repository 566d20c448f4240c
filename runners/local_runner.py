"""Runs the pipeline in this process with TFX's LocalDagRunner (ML Metadata in SQLite).

    python runners/local_runner.py            # or: make run
    tfx pipeline create --engine=local --pipeline_path=runners/local_runner.py
    tfx run create --engine=local --pipeline_name=penguin

The config comes from the file named by $TFXT_CONFIG (YAML or JSON), if set.
"""

import os
import sys

from pipeline.config import ConfigError, load_config


def main() -> int:
    try:
        config = load_config(os.environ.get("TFXT_CONFIG"))
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr)
        return 2
    # Heavy imports only once the config is valid, so a bad config fails in a second.
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.ops.run import run_and_report
    from pipeline.pipeline import create_pipeline

    return run_and_report(config, lambda: LocalDagRunner().run(create_pipeline(config)))


if __name__ == "__main__":
    sys.exit(main())

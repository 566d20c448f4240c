"""Runs the pipeline in this process with TFX's LocalDagRunner (ML Metadata in SQLite).

    python runners/local_runner.py            # or: make run
    python runners/local_runner.py --force    # or: make run FORCE=1 (no fast path)
    tfx pipeline create --engine=local --pipeline_path=runners/local_runner.py
    tfx run create --engine=local --pipeline_name=penguin

The config comes from the file named by $TFXT_CONFIG (YAML or JSON), if set. When nothing
changed since a run that had nothing to do, it says so and ends before TensorFlow loads
(`pipeline/ops/unchanged.py`); `--force` runs anyway.
"""

import os
import sys

from pipeline.config import ConfigError, load_config
from pipeline.training.feature_check import check_features


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        config = load_config(os.environ.get("TFXT_CONFIG"))
        check_features()
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr)
        return 2
    # Not under TFX's CLI (`tfx pipeline create` runs this file to catch the pipeline it builds).
    if "--force" not in argv and "tfx.tools.cli.handler.base_handler" not in sys.modules:
        from pipeline.ops.unchanged import serve_if_unchanged

        code = serve_if_unchanged(config)
        if code is not None:
            return code
    # Heavy imports only once the config is valid, so a bad config fails in a second.
    from runners.startup import defer_library_inits

    defer_library_inits()
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.ops.run import run_and_report
    from pipeline.pipeline import create_pipeline

    return run_and_report(config, lambda: LocalDagRunner().run(create_pipeline(config)))


if __name__ == "__main__":
    sys.exit(main())

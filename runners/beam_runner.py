"""Runs the pipeline with TFX's BeamDagRunner: Beam orchestrates the components.

    python runners/beam_runner.py             # run, with progress and a summary
    python runners/beam_runner.py --dry-run   # print the resolved Beam arguments, run nothing

The config comes from the file named by $TFXT_CONFIG (YAML or JSON), if set; its
`orchestration` section picks DirectRunner or DataflowRunner for the components' Beam jobs.
"""

import argparse
import os
import sys

from pipeline.config import ConfigError, load_config
from pipeline.orchestration import beam_pipeline_args


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="print the fully resolved Beam arguments and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(os.environ.get("TFXT_CONFIG"))
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print("\n".join(beam_pipeline_args(config)))
        return 0
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from pipeline.ops.run import run_and_report
    from pipeline.pipeline import create_pipeline

    return run_and_report(config, lambda: BeamDagRunner().run(create_pipeline(config)))


if __name__ == "__main__":
    sys.exit(main())

"""Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines, and submits it.

    python runners/kubeflow_v2_runner.py                       # compile to build/<name>_pipeline.json
    python runners/kubeflow_v2_runner.py --submit --dry-run    # print the PipelineJob request, send nothing
    python runners/kubeflow_v2_runner.py --submit --param train_steps=500 --param data_root=gs://b/data
    tfx pipeline compile --engine=vertex --pipeline_path=runners/kubeflow_v2_runner.py

The config comes from $TFXT_CONFIG; its `orchestration` section names the image,
project and region. Components run in the image the Dockerfile builds.
"""

import argparse
import os
import sys

from pipeline.config import ConfigError, load_config
from pipeline.ops import vertex


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="where to write the pipeline JSON")
    parser.add_argument("--submit", action="store_true", help="submit a PipelineJob to Vertex AI")
    parser.add_argument("--dry-run", action="store_true", help="with --submit: print the request only")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help=f"override a runtime parameter ({', '.join(vertex.RUNTIME_PARAMETERS)})")
    args = parser.parse_args(argv)
    try:
        config = load_config(os.environ.get("TFXT_CONFIG"))
        overrides = dict(item.split("=", 1) for item in args.param if "=" in item)
        if len(overrides) != len(args.param):
            raise ConfigError(f"--param takes NAME=VALUE, got {args.param}.")
        if args.submit:
            vertex.check_submit(config)
            vertex.parameter_values(overrides)
        template_path = vertex.compile_pipeline(config, args.output or vertex.default_template_path(config))
        print(f"Compiled {template_path}")
        if args.submit:
            vertex.submit(config, template_path, overrides, args.dry_run, sys.stdout)
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

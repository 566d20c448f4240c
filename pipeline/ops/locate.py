"""Finding a run's inputs for edge export: the latest pushed model, Transform output and data.

Used by `tfxt edge export` (runners/cli/edge.py) and the benchmark (bench/edge.py).
Raises LookupError with a message saying what to pass instead.
"""

import os
from typing import Tuple


def latest_pushed_model(serving_model_dir: str) -> str:
    """The highest numbered version folder under `serving_model_dir`."""
    from tfx.dsl.io import fileio

    names = [name.rstrip("/") for name in fileio.listdir(serving_model_dir)] \
        if fileio.isdir(serving_model_dir) else []
    versions = sorted(int(name) for name in names if name.isdigit())
    if not versions:
        raise LookupError(f"No pushed model in {serving_model_dir}: run the pipeline "
                          "(make run) or pass --model-dir.")
    return os.path.join(serving_model_dir, str(versions[-1]))


def latest_run_inputs(config) -> Tuple[str, str]:
    """The transform graph and raw examples folders of the latest run, from ML Metadata."""
    from pipeline import mlmd

    if not os.path.isfile(config.metadata_path):
        raise LookupError(f"No ML Metadata at {config.metadata_path}: pass --transform-graph "
                          "and --examples.")
    store = mlmd.open_store(config)
    transform_graph = examples = None
    for run_id in reversed(mlmd.run_ids(store, config.pipeline_name)):
        nodes = {n.node_id: n for n in mlmd.run_executions(store, config.pipeline_name, run_id)}
        transform = nodes.get("Transform")
        example_gen = nodes.get("CsvExampleGen")
        if transform and transform.outputs.get("transform_graph") and example_gen \
                and example_gen.outputs.get("examples"):
            transform_graph = transform.outputs["transform_graph"][0].uri
            examples = example_gen.outputs["examples"][0].uri
            break
    if transform_graph is None:
        raise LookupError(f"No run of '{config.pipeline_name}' produced a Transform output; "
                          "pass --transform-graph and --examples.")
    return transform_graph, examples

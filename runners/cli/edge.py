"""`tfxt edge ...`: edge export from any pushed model, and the Edge TPU readiness check.

A thin layer over `edge.export.export_edge`, `pipeline.ops.locate` and `edge.readiness`;
`runners.cli.main` adds this group to `tfxt`.
"""

import os
import sys

import click

from runners.cli.options import CONFIG_OPTION, SET_OPTION, config_from_options


@click.group("edge")
def edge() -> None:
    """Export int8 TFLite models for Coral Edge TPU / Raspberry Pi, gated by accuracy parity."""


@edge.command("export")
@CONFIG_OPTION
@SET_OPTION
@click.option("--model-dir", type=click.Path(file_okay=False, exists=True),
              help="A pushed SavedModel (default: the latest version under the serving model dir).")
@click.option("--transform-graph", type=click.Path(file_okay=False, exists=True),
              help="Transform's output folder (default: the latest run's, from ML Metadata).")
@click.option("--examples", type=click.Path(file_okay=False, exists=True),
              help="CsvExampleGen's output folder with Split-train and Split-eval "
                   "(default: the latest run's, from ML Metadata).")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="Where to write (default: <output_dir>/edge_model/<pipeline>/<model version>).")
@click.option("--max-accuracy-drop", type=float, default=None,
              help="Allowed accuracy drop against the SavedModel (default: config edge.max_accuracy_drop).")
def export_command(config_path, overrides, model_dir, transform_graph, examples, output_dir,
                   max_accuracy_drop) -> None:
    """Export every edge variant of a pushed model; exit 1 if the int8 model is not deployable."""
    from pipeline.ops.locate import latest_pushed_model, latest_run_inputs

    config = config_from_options(config_path, overrides)
    try:
        model_dir = model_dir or latest_pushed_model(config.serving_model_dir)
        if transform_graph is None or examples is None:
            found_transform, found_examples = latest_run_inputs(config)
            transform_graph = transform_graph or found_transform
            examples = examples or found_examples
    except LookupError as e:
        raise click.ClickException(str(e)) from None
    output_dir = output_dir or os.path.join(config.output_dir, "edge_model", config.pipeline_name,
                                            os.path.basename(os.path.normpath(model_dir)))
    drop = config.edge.max_accuracy_drop if max_accuracy_drop is None else max_accuracy_drop
    if not 0.0 <= drop <= 1.0:
        raise click.BadParameter("must lie in [0, 1] (0.01 = one point)", param_hint="--max-accuracy-drop")
    blessing = run_export(model_dir, transform_graph, examples, output_dir, drop,
                          config.edge.representative_examples)
    from edge.parity import format_blessing

    click.echo(f"Model: {model_dir}")
    click.echo("\n".join(format_blessing(blessing, output_dir)))
    sys.exit(0 if blessing["blessed"] else 1)


def run_export(model_dir: str, transform_graph: str, examples: str, output_dir: str,
               max_accuracy_drop: float, representative_examples: int) -> dict:
    """`export_edge` on folders; user errors become click errors."""
    import tensorflow_transform as tft

    from edge.export import export_edge
    from edge.parity import read_rows
    from edge.spec import SpecError

    try:
        return export_edge(
            model_dir, tft.TFTransformOutput(transform_graph),
            read_rows(os.path.join(examples, "Split-train"), limit=representative_examples),
            read_rows(os.path.join(examples, "Split-eval")),
            output_dir, max_accuracy_drop, representative_examples)
    except (SpecError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None


@edge.command("check")
@click.argument("tflite_path", type=click.Path(dir_okay=False, exists=True))
def check_command(tflite_path) -> None:
    """Edge TPU readiness of a .tflite file: int8 tensors, static shapes, supported ops."""
    from edge.readiness import check_edgetpu_readiness

    report = check_edgetpu_readiness(tflite_path)
    click.echo(f"{tflite_path}: {'Edge TPU ready' if report['ready'] else 'NOT Edge TPU ready'}")
    click.echo(f"  ops: {', '.join(report['ops'])}")
    for problem in report["problems"]:
        click.echo(f"  {problem}")
    sys.exit(0 if report["ready"] else 1)

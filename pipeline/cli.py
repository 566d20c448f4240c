"""The project CLI, `tfxt`: a thin layer over functions the tests call directly.

Each package adds its own command group here (serving, edge, runs); commands
import TensorFlow and TFX inside their bodies, so `tfxt --help` stays fast.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import click  # noqa: E402

from pipeline.cli_options import (  # noqa: E402,F401 - re-exported for the command groups
    CONFIG_OPTION,
    SET_OPTION,
    config_from_options,
    parse_overrides,
)


@click.group()
def main() -> None:
    """TFX pipeline template: run the pipeline, inspect runs, serve and export models."""


@main.command()
@CONFIG_OPTION
@SET_OPTION
def run(config_path, overrides) -> None:
    """Run the whole pipeline locally (LocalDagRunner) with progress and a summary."""
    config = config_from_options(config_path, overrides)
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.pipeline import create_pipeline
    from pipeline.run import run_and_report

    sys.exit(run_and_report(config, lambda: LocalDagRunner().run(create_pipeline(config))))


@main.command()
@CONFIG_OPTION
@SET_OPTION
@click.option("--run-id", default=None, help="A past run id (default: the latest run).")
def summary(config_path, overrides, run_id) -> None:
    """Print the summary of a past run from ML Metadata."""
    config = config_from_options(config_path, overrides)
    from pipeline.summary import format_summary, summarize

    result = summarize(config, run_id)
    if result is None:
        raise click.ClickException(f"No runs of '{config.pipeline_name}' in {config.metadata_path}.")
    click.echo(format_summary(result, config))


@main.group()
def schema() -> None:
    """Manage the curated schema."""


@schema.command("refresh")
@CONFIG_OPTION
@SET_OPTION
def schema_refresh(config_path, overrides) -> None:
    """Update schema/schema.pbtxt from the latest SchemaGen output; then review the diff."""
    config = config_from_options(config_path, overrides, require_schema=False)
    from pipeline.schema import refresh_schema

    try:
        changes = refresh_schema(config)
    except LookupError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Wrote {config.schema_path}:")
    for line in changes:
        click.echo(f"  {line}")
    click.echo("Review the diff (git diff schema/) before the next run.")


from edge.cli import edge as edge_group  # noqa: E402 - needs the options defined above

main.add_command(edge_group)

from pipeline.tracking_cli import runs, synth_command  # noqa: E402

main.add_command(runs)
main.add_command(synth_command)

from serving.cli import serving  # noqa: E402 - defined after `main`'s options, which it reuses

main.add_command(serving)

if __name__ == "__main__":
    main()

"""The project CLI, `tfxt`: a thin layer over functions the tests call directly.

One root group; each command group lives in its own module of `runners.cli`
and imports TensorFlow and TFX inside its command bodies, so `tfxt --help` and
config errors stay fast. Nothing in the repo imports the CLI.
"""

import sys

import click

from runners.cli.cluster import cluster
from runners.cli.edge import edge
from runners.cli.lifecycle import rehearse_command, watch_command
from runners.cli.monitor import monitor
from runners.cli.options import CONFIG_OPTION, SET_OPTION, config_from_options
from runners.cli.report import report_command
from runners.cli.runs import runs, synth_command
from runners.cli.serving import serving


@click.group()
def main() -> None:
    """TFX pipeline template: run the pipeline, inspect runs, serve and export models."""


@main.command()
@CONFIG_OPTION
@SET_OPTION
@click.option("--force", is_flag=True,
              help="Run even when nothing changed since a run that had nothing to do.")
def run(config_path, overrides, force) -> None:
    """Run the whole pipeline locally (LocalDagRunner) with progress and a summary."""
    config = config_from_options(config_path, overrides, check_features=True)
    if not force:
        from pipeline.ops.unchanged import serve_if_unchanged

        code = serve_if_unchanged(config)
        if code is not None:
            sys.exit(code)
    from runners.startup import defer_library_inits

    defer_library_inits()
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.ops.run import run_and_report
    from pipeline.pipeline import create_pipeline

    sys.exit(run_and_report(config, lambda: LocalDagRunner().run(create_pipeline(config))))


@main.command()
@CONFIG_OPTION
@SET_OPTION
@click.option("--run-id", default=None, help="A past run id (default: the latest run).")
def summary(config_path, overrides, run_id) -> None:
    """Print the summary of a past run from ML Metadata."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops.summary import format_summary, summarize

    result = summarize(config, run_id)
    if result is None:
        raise click.ClickException(f"No runs of '{config.pipeline_name}' in {config.metadata_path}.")
    click.echo(format_summary(result, config))


@main.command()
@CONFIG_OPTION
@SET_OPTION
@click.option("--dry-run", is_flag=True, help="List the folders, remove nothing.")
def gc(config_path, overrides, dry_run) -> None:
    """Remove artifact folders under the pipeline root that ML Metadata does not reference."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops.gc import collect_garbage
    from pipeline.ops.lock import LockHeldError

    try:
        folders = collect_garbage(config, dry_run=dry_run)
    except LockHeldError as e:
        raise click.ClickException(str(e)) from None
    verb = "Would remove" if dry_run else "Removed"
    click.echo(f"{verb} {len(folders)} unreferenced artifact folder(s)" + (":" if folders else "."))
    for folder in folders:
        click.echo(f"  {folder}")


@main.group()
def schema() -> None:
    """Manage the curated schema."""


@schema.command("refresh")
@CONFIG_OPTION
@SET_OPTION
def schema_refresh(config_path, overrides) -> None:
    """Update schema/schema.pbtxt from the latest SchemaGen output; then review the diff."""
    config = config_from_options(config_path, overrides, require_schema=False)
    from pipeline.ops.schema_refresh import refresh_schema

    click.echo(f"Config: {config_path or 'built-in defaults (no --config, no TFXT_CONFIG)'}; "
               f"pipeline '{config.pipeline_name}', data {config.data_root}")
    try:
        changes = refresh_schema(config)
    except LookupError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Wrote {config.schema_path}:")
    for line in changes:
        click.echo(f"  {line}")
    click.echo("Review the diff (git diff schema/) before the next run.")


for group in (edge, runs, synth_command, serving, cluster, monitor, report_command, watch_command,
              rehearse_command):
    main.add_command(group)

if __name__ == "__main__":
    main()

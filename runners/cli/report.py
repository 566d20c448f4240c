"""`tfxt report [--run-id]`: writes the HTML run report (and model card) of any past run.

A thin click command over `pipeline.ops.report.write_report`; `runners.cli.main` adds it to `tfxt`.
"""

import click

from runners.cli.options import CONFIG_OPTION, SET_OPTION, config_from_options


@click.command("report")
@CONFIG_OPTION
@SET_OPTION
@click.option("--run-id", default=None, help="A past run id (default: the latest run); see `tfxt runs list`.")
def report_command(config_path, overrides, run_id) -> None:
    """Write outputs/reports/<pipeline>/<run id>/index.html from ML Metadata and print its path."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops import tracking
    from pipeline.ops.report import write_report

    try:
        path = write_report(config, run_id)
    except tracking.TrackingError as e:
        raise click.ClickException(str(e)) from None
    click.echo(path)

"""`tfxt monitor skew|drift|decay`: training/serving skew, and the drift and decay the runs recorded.

Thin click commands over `pipeline.ops.monitoring` and `serving.request_log.read_rows`;
`runners.cli.main` adds the group to `tfxt`.
"""

import sys

import click

from runners.cli.options import CONFIG_OPTION, SET_OPTION, config_from_options

# Exit codes of `monitor skew`: 0 no skew, 1 skew past a threshold, 2 nothing to check.
SKEW_FOUND = 1
NOTHING_TO_CHECK = 2


class NothingToCheck(click.ClickException):
    exit_code = NOTHING_TO_CHECK


@click.group()
def monitor() -> None:
    """Production monitoring: training/serving skew, drift between spans, served-model decay."""


@monitor.command("skew")
@CONFIG_OPTION
@SET_OPTION
@click.option("--log", "log_path", type=click.Path(dir_okay=False),
              help="Request log to read (default: the local server's serving_logs/requests.jsonl, "
                   "with its rotated files).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, exists=True),
              help="A CSV of serving rows instead of the request log.")
@click.option("--version", type=int, default=None,
              help="Compare with this version's training statistics (default: the served one).")
def skew_command(config_path, overrides, log_path, csv_path, version) -> None:
    """Compare serving rows with the served model's training statistics; exit 1 on skew."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops import monitoring

    rows, malformed, source = _serving_rows(config, log_path, csv_path)
    if malformed:
        click.echo(f"Skipped {malformed} malformed line(s) in {source}.", err=True)
    if not rows:
        raise NothingToCheck(f"{source} holds no serving rows (malformed lines skipped: {malformed}); "
                             "send requests to the server first, or pass --csv.")
    try:
        report = monitoring.check_skew(config, rows, version)
    except (monitoring.MonitoringError, monitoring.MetadataStoreError) as e:
        raise NothingToCheck(str(e)) from None
    click.echo(monitoring.format_skew(report, malformed))
    sys.exit(SKEW_FOUND if report.skewed else 0)


def _serving_rows(config, log_path, csv_path):
    if csv_path:
        import pandas as pd

        frame = pd.read_csv(csv_path)
        return frame.to_dict("records"), 0, csv_path
    from serving import request_log, server_files

    log_path = log_path or server_files.serving_paths(config).request_log
    try:
        rows, malformed = request_log.read_rows(log_path)
    except FileNotFoundError:
        raise NothingToCheck(f"No request log at {log_path}: start the server "
                             "(`tfxt serving serve`) and send requests, or pass --csv.") from None
    return rows, malformed, log_path


@monitor.command("drift")
@CONFIG_OPTION
@SET_OPTION
@click.option("--run-id", default=None, help="One run (default: every run).")
def drift_command(config_path, overrides, run_id) -> None:
    """Drift between the newest two spans of each run: feature, measure, value, threshold."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops import monitoring

    click.echo(monitoring.format_drift(monitoring.drift_results(config, run_id)))


@monitor.command("decay")
@CONFIG_OPTION
@SET_OPTION
def decay_command(config_path, overrides) -> None:
    """The served models' accuracy span by span, and the retrain triggers (as `tfxt runs models`)."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops import monitoring

    click.echo(monitoring.format_decay(monitoring.decay_records(config)))

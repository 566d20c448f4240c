"""`tfxt runs ...` (run history, lineage, rerun) and `tfxt synth` (synthetic data).

Thin click commands over `pipeline.ops.tracking` and `pipeline.ops.synthetic`;
`runners.cli.main` adds them to the `tfxt` group.
"""

import dataclasses
import json
import sys

import click

from runners.cli.options import CONFIG_OPTION, SET_OPTION, config_from_options, parse_overrides


@click.group()
def runs() -> None:
    """Run history and lineage from ML Metadata; re-run a past run's config."""


@runs.command("list")
@CONFIG_OPTION
@SET_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(config_path, overrides, as_json) -> None:
    """Every run: id, time, config hash, spans, hyperparameters, metrics, blessing, pushed version,
    and the served model's accuracy on the run's new span."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops import monitoring, tracking

    try:
        history = tracking.list_runs(config)
        decay = monitoring.decay_records(config)
    except tracking.TrackingError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        by_run = {record.run_id: dataclasses.asdict(record) for record in decay}
        click.echo(json.dumps([{**_run_dict(run), "served_model_decay": by_run.get(run.run_id)}
                               for run in history], indent=2, default=str))
    elif not history:
        click.echo(f"No runs of '{config.pipeline_name}' in the metadata store yet.")
    else:
        click.echo(tracking.format_runs(history, monitoring.decay_cells(decay)))


@runs.command("models")
@CONFIG_OPTION
@SET_OPTION
def models_command(config_path, overrides) -> None:
    """Each served model's accuracy span by span (measured before retraining), and the retrain triggers."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops import monitoring, tracking

    try:
        records = monitoring.decay_records(config)
    except tracking.TrackingError as e:
        raise click.ClickException(str(e)) from None
    click.echo(monitoring.format_decay(records))


@runs.command("show")
@CONFIG_OPTION
@SET_OPTION
@click.argument("run_id", required=False)
@click.option("--config-json", is_flag=True, help="Also print the recorded config.")
def show_command(config_path, overrides, run_id, config_json) -> None:
    """One run's record and lineage: examples, schema, transform graph, model (default: latest)."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops import tracking

    try:
        run = tracking.get_run(config, run_id)
        items = tracking.lineage(config, run.run_id)
    except tracking.TrackingError as e:
        raise click.ClickException(str(e)) from None
    click.echo(tracking.format_lineage(run, items))
    if config_json and run.config is not None:
        click.echo("\nRecorded config:\n" + json.dumps(run.config, indent=2, sort_keys=True))


@runs.command("rerun")
@CONFIG_OPTION
@click.option("--set", "rerun_overrides", multiple=True, metavar="FIELD=VALUE",
              help="Change a field of the recorded config, e.g. --set enable_cache=false.")
@click.argument("run_id")
def rerun_command(config_path, rerun_overrides, run_id) -> None:
    """Run the pipeline again with the config RUN_ID recorded (same store, same outputs)."""
    config = config_from_options(config_path, ())
    from pipeline.ops import tracking

    try:
        rerun_config = tracking.rerun_config(config, run_id, _nested(rerun_overrides))
    except tracking.TrackingError as e:
        raise click.ClickException(str(e)) from None
    except ValueError as e:  # ConfigError: the recorded config no longer validates
        raise click.UsageError(str(e)) from None
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.ops.run import run_and_report
    from pipeline.pipeline import create_pipeline

    click.echo(f"Re-running {run_id} (config hash {rerun_config.fingerprint()})")
    sys.exit(run_and_report(rerun_config,
                            lambda: LocalDagRunner().run(create_pipeline(rerun_config))))


@click.command("synth")
@click.option("--rows", type=click.IntRange(min=1), required=True, help="Rows in total.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output data_root; span-<N>/penguins.csv are written under it.")
@click.option("--spans", default="2007,2008,2009", show_default=True,
              help="Comma-separated span numbers; rows are split evenly over them.")
@click.option("--seed", type=int, default=0, show_default=True)
def synth_command(rows, out_dir, spans, seed) -> None:
    """Write penguin-like synthetic CSVs of any size (class-conditional, seeded)."""
    from pipeline.ops.synthetic import write_spans

    try:
        span_numbers = [int(s) for s in spans.split(",") if s]
    except ValueError:
        raise click.BadParameter(f"{spans!r} is not a comma-separated list of numbers",
                                 param_hint="--spans") from None
    for path in write_spans(out_dir, rows, span_numbers, seed):
        click.echo(path)


def _nested(overrides) -> dict:
    return parse_overrides(overrides)


def _run_dict(run) -> dict:
    return {"run_id": run.run_id, "started": run.started.isoformat(), "state": run.state,
            "config_fingerprint": run.config_fingerprint, "spans": run.spans,
            "hyperparameters": run.hyperparameters, "metrics": run.metrics,
            "blessed": run.blessed, "pushed_version": run.pushed_version, "model_id": run.model_id,
            "pushed_reused": run.pushed_reused, "cached_nodes": run.cached_nodes}

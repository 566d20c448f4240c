"""`tfxt watch DATA_ROOT` (continuous training) and `tfxt rehearse` (a year in production).

Thin click commands over `pipeline.ops.watch`, `pipeline.ops.rollback` and
`pipeline.ops.rehearsal`; `runners.cli.main` adds them to the `tfxt` group.
"""

import os

import click

from runners.cli.options import CONFIG_OPTION, SET_OPTION, config_from_options, parse_overrides


@click.command("watch")
@click.argument("data_root", type=click.Path(file_okay=False))
@CONFIG_OPTION
@SET_OPTION
@click.option("--passes", type=int, default=None,
              help="Stop after this many scans (default: run until stopped).")
def watch_command(data_root, config_path, overrides, passes) -> None:
    """Retrain on each new complete span of DATA_ROOT (span-<N>/ folders with a _SUCCESS marker)."""
    config = config_from_options(config_path, overrides)
    from pipeline.ops import rollback, watch
    from pipeline.ops.lock import LockHeldError

    try:
        watch.watch(config, os.path.abspath(data_root), passes=passes,
                    before_run=rollback.before_run, after_run=rollback.serve_newest)
    except LockHeldError as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        click.echo("Stopped watching.")


@click.command("rehearse")
@click.option("--out", "out_dir", default="rehearsal", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the synthetic spans and every output of the rehearsal.")
@click.option("--spans", default=12, show_default=True, type=click.IntRange(2, 99),
              help="How many spans (months) to rehearse.")
@click.option("--rows", "rows_per_span", default=120, show_default=True, type=click.IntRange(20),
              help="Rows per span.")
@click.option("--seed", default=0, show_default=True, type=int)
@SET_OPTION
def rehearse_command(out_dir, spans, rows_per_span, seed, overrides) -> None:
    """A year in production: synthetic spans with known changes, the continuous loop, a timeline."""
    from pipeline.config import ConfigError
    from pipeline.ops.rehearsal import rehearse

    if os.path.exists(os.path.join(out_dir, "incoming")):
        raise click.UsageError(f"{out_dir} already holds a rehearsal; pass another --out or delete it.")
    try:
        rehearse(os.path.abspath(out_dir), spans, rows_per_span, seed, parse_overrides(overrides))
    except ConfigError as e:
        raise click.UsageError(str(e)) from None

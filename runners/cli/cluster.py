"""`tfxt cluster launch`: train on a real multi-process cluster on loopback.

A thin layer over `pipeline.training.cluster.launch`, which tests call directly.
"""

import click

from pipeline.config import STRATEGIES, ConfigError
from runners.cli.options import config_from_options


@click.group()
def cluster() -> None:
    """Run the Trainer under a tf.distribute strategy on a loopback cluster."""


@cluster.command("launch")
@click.option("--strategy", type=click.Choice(STRATEGIES), required=True)
@click.option("--pipeline-root", type=click.Path(file_okay=False, exists=True), required=True,
              help="A pipeline_root holding Transform outputs.")
@click.option("--serving-model-dir", type=click.Path(file_okay=False), required=True)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker tasks (default: 2 for multi-process strategies, else 1).")
@click.option("--ps", type=click.IntRange(min=0), default=None,
              help="ps tasks (parameter_server; default 1).")
@click.option("--cpu-devices", type=click.IntRange(min=1), default=1,
              help="Logical CPU devices per task (mirrored: one replica each).")
@click.option("--config", "config_path", envvar="TFXT_CONFIG", type=click.Path(dir_okay=False),
              help="Config file for hyperparameters, seed and run_fn (default: built-in defaults).")
@click.option("--train-steps", type=click.IntRange(min=1), default=None,
              help="Overrides hyperparameters.train_steps.")
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Logs and job file (default: <serving-model-dir>.cluster).")
@click.option("--timeout", type=float, default=None, help="Seconds before the cluster is stopped.")
def launch_command(strategy, pipeline_root, serving_model_dir, workers, ps, cpu_devices, config_path,
                   train_steps, work_dir, timeout) -> None:
    """Train from a run's Transform outputs; every task is a process with its own TF_CONFIG."""
    config = config_from_options(config_path, (), require_schema=False)
    from pipeline.training import cluster as cluster_lib

    try:
        work_dir = cluster_lib.launch(
            strategy, pipeline_root, serving_model_dir, config=config, workers=workers, ps=ps,
            cpu_devices=cpu_devices, train_steps=train_steps, work_dir=work_dir,
            timeout_seconds=timeout or cluster_lib.DEFAULT_TIMEOUT_SECONDS)
    except (ConfigError, cluster_lib.ClusterError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Serving model written to {serving_model_dir} (task logs in {work_dir}).")

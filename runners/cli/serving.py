"""`tfxt serving ...`: serve, configure, label versions, query and batch-predict.

A thin layer over `serving.server`, `serving.server_files`, `serving.versions`,
`serving.client` and `serving.batch`, which the tests call directly.
"""

import json
import signal
import threading

import click

from runners.cli.options import CONFIG_OPTION, SET_OPTION, config_from_options


@click.group()
def serving() -> None:
    """Serve pushed models (local TF Serving-compatible server), canary, promote, roll back."""


@serving.command()
@CONFIG_OPTION
@SET_OPTION
@click.option("--host", default=None, help="Address to bind (default: serving.host, 127.0.0.1).")
@click.option("--rest-port", type=int, default=None, help="REST port (default: serving.rest_port, 8501).")
@click.option("--grpc-port", type=int, default=None, help="gRPC port (default: serving.grpc_port, 8500).")
def serve(config_path, overrides, host, rest_port, grpc_port) -> None:
    """Run the local TF Serving-compatible server until Ctrl-C."""
    config = config_from_options(config_path, overrides, require_schema=False)
    from serving.server import LocalServer
    from serving.server_files import serving_paths
    from serving.versions import ready_versions

    paths = serving_paths(config)
    if not ready_versions(paths.serving_model_dir):
        raise click.ClickException(f"No pushed versions in {paths.serving_model_dir}; run the pipeline "
                                   "(`make run`) so the Pusher pushes a blessed model first.")
    overrides_ = {k: v for k, v in (("host", host), ("rest_port", rest_port),
                                    ("grpc_port", grpc_port)) if v is not None}
    server = LocalServer.from_config(config, **overrides_)
    server.start()
    click.echo(f"Serving {paths.model_name} from {paths.serving_model_dir} "
               f"(config {paths.models_config}, request log {paths.request_log})")
    click.echo(f"REST on http://{server.host}:{server.rest_port}/v1/models/{paths.model_name}, "
               f"gRPC on {server.host}:{server.grpc_port}. Ctrl-C stops.")
    # Explicit handlers: Python's own Ctrl-C handling is off when SIGINT is inherited as
    # ignored (any `cmd &` from a script), and SIGTERM (Kubernetes, systemd, `kill`) would
    # otherwise end the process without closing the ports and the request log.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    click.echo("Stopped.")


@serving.command("config")
@CONFIG_OPTION
@SET_OPTION
@click.option("--reset-labels", is_flag=True, help="Label the newest blessed version stable, drop canary.")
def write_config(config_path, overrides, reset_labels) -> None:
    """Write models.config, batching_parameters.txt and monitoring.config for TF Serving."""
    config = config_from_options(config_path, overrides, require_schema=False)
    from serving.versions import VersionError, write_serving_files

    try:
        files = write_serving_files(config, keep_labels=not reset_labels)
    except VersionError as e:
        raise click.ClickException(f"{e} Use `tfxt serving canary` and `promote` instead.") from None
    for name, path in files.items():
        click.echo(f"{name}: {path}")


@serving.command()
@CONFIG_OPTION
@SET_OPTION
def versions(config_path, overrides) -> None:
    """Show the pushed versions, whether each is blessed, and their labels."""
    paths = _paths(config_path, overrides)
    from serving.versions import list_versions

    rows = list_versions(paths)
    if not rows:
        raise click.ClickException(f"No pushed versions in {paths.serving_model_dir}.")
    click.echo(f"{'VERSION':<12} {'BLESSED':<8} LABELS")
    for info in rows:
        click.echo(f"{info.version:<12} {'yes' if info.blessed else 'no':<8} {', '.join(info.labels)}")


@serving.command()
@click.argument("version", type=int)
@CONFIG_OPTION
@SET_OPTION
def canary(version, config_path, overrides) -> None:
    """Label VERSION canary, next to the current stable version."""
    from serving import versions as versions_lib

    _change(lambda paths: versions_lib.set_canary(paths, version), config_path, overrides)


@serving.command()
@CONFIG_OPTION
@SET_OPTION
def promote(config_path, overrides) -> None:
    """Make the canary version stable."""
    from serving import versions as versions_lib

    _change(versions_lib.promote, config_path, overrides)


@serving.command()
@CONFIG_OPTION
@SET_OPTION
def rollback(config_path, overrides) -> None:
    """Point stable at the previous blessed version (and drop canary)."""
    from serving import versions as versions_lib

    _change(versions_lib.rollback, config_path, overrides)


@serving.command()
@click.argument("rows_json")
@CONFIG_OPTION
@SET_OPTION
@click.option("--grpc", "use_grpc", is_flag=True, help="Use the gRPC API (default: REST).")
@click.option("--host", default=None, help="Server address (default: serving.host).")
@click.option("--port", type=int, default=None, help="Server port (default: the configured REST/gRPC port).")
@click.option("--version", "version", type=int, default=None, help="A version number.")
@click.option("--label", default=None, help="A version label (stable, canary).")
def predict(rows_json, config_path, overrides, use_grpc, host, port, version, label) -> None:
    """Predict ROWS_JSON (a JSON list of raw feature objects, or @file) with a running server."""
    config = config_from_options(config_path, overrides, require_schema=False)
    from serving.client import GrpcClient, RestClient, ServingClientError

    text = open(rows_json[1:]).read() if rows_json.startswith("@") else rows_json
    try:
        rows = json.loads(text)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="ROWS_JSON") from None
    rows = [rows] if isinstance(rows, dict) else rows
    settings = config.serving
    client = (GrpcClient(config.pipeline_name, host or settings.host, port or settings.grpc_port)
              if use_grpc else RestClient(config.pipeline_name, host or settings.host,
                                          port or settings.rest_port))
    try:
        result = client.predict(rows, version=version, label=label)
    except (ServingClientError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(
            f"Cannot reach the server: {e}. Is `tfxt serving serve` running?") from None
    click.echo(json.dumps({"version": result.version, "predictions": result.rows}, indent=2))


@serving.command()
@click.argument("input_pattern")
@CONFIG_OPTION
@SET_OPTION
@click.option("--output", "output_prefix", default=None,
              help="Output prefix (default: predictions/predictions next to the input).")
@click.option("--version", "version", type=int, default=None,
              help="Version to use (default: the stable one).")
def batch(input_pattern, config_path, overrides, output_prefix, version) -> None:
    """Batch-predict INPUT_PATTERN (CSV or TFRecord) with Beam RunInference."""
    config = config_from_options(config_path, overrides, require_schema=False)
    import os

    from pipeline.orchestration import beam_pipeline_args
    from serving.batch import run_batch_predictions
    from serving.server_files import serving_paths
    from serving.versions import stable_version

    paths = serving_paths(config)
    version = version if version is not None else stable_version(paths)
    if version is None:
        raise click.ClickException(f"No pushed versions in {paths.serving_model_dir}.")
    model_dir = os.path.join(paths.serving_model_dir, str(version))
    try:
        files = run_batch_predictions(model_dir, input_pattern, output_prefix, beam_pipeline_args(config))
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Version {version} predicted {input_pattern}:")
    for path in files:
        click.echo(f"  {path}")


def _paths(config_path, overrides):
    from serving.server_files import serving_paths

    return serving_paths(config_from_options(config_path, overrides, require_schema=False))


def _change(action, config_path, overrides) -> None:
    from serving.versions import VersionError

    paths = _paths(config_path, overrides)
    try:
        labels = action(paths)
    except VersionError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{paths.models_config}: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))

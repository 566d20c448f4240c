"""Experiment tracking, reproducibility and the MySQL-backed metadata store.

Unit tests cover the config's metadata section and the recorded config. The
end-to-end tests start a real MariaDB server (Debian's package) on loopback and
run the pipeline against it twice, with a short training:

1. a first run;
2. `tfxt runs rerun <run 1>` with caching off into a separate output dir: the
   reproducibility check compares its transformed data and evaluation metrics
   with run 1's.

What a cached run records (reused model, `(reused)` in `runs list`, `[cached]` in
`runs show`) does not depend on the store's backend; tests/test_pipeline_e2e.py
checks it on the SQLite store of its unchanged re-run, which it makes anyway.
"""

import glob
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edge.parity import read_rows
from pipeline import mlmd
from pipeline.components import run_record
from pipeline.config import ConfigError, load_config
from pipeline.ops import tracking
from runners.cli.main import main
from tests.conftest import DATA_ROOT, RUN_TIMEOUT_SECONDS, run_pipeline, write_config

# Short training keeps both runs within the test budget; the threshold keeps them blessed.
# The edge export is tested on the shared run (tests/test_edge.py), so it is off here.
SMALL_RUN = {"hyperparameters": {"train_steps": 30, "eval_steps": 5},
             "thresholds": {"min_accuracy": 0.4}, "edge": {"enabled": False}}
# Stated tolerance of the reproducibility check. Same machine, seed and data, and ExampleGen
# reads the span files in sorted order, so under the in_memory DirectRunner the runs are expected
# to agree exactly. The tolerance allows float32 rounding only: when rows arrive in another order,
# Transform's means and variances sum in another order and a z-scored value moves in its last bits
# (seen when ExampleGen still took tf.io.gfile.glob's order: -1.9927371 vs -1.9927382, 5 ulps).
# A relative 1e-5 (~80 ulps) is far below what a different seed, scaling, row or training would do.
RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-6  # for values at or near zero, where a relative bound means nothing


# ---------------------------------------------------------------- unit tests


def test_metadata_section_builds_the_mysql_connection(tmp_path):
    config = load_config(overrides={"metadata": {
        "backend": "mysql", "host": "db.internal", "port": "3307", "database": "mlmd",
        "user": "tfx", "password": "secret"}}, require_schema=False)
    connection = mlmd.connection_config(config)
    assert connection.WhichOneof("config") == "mysql"
    assert (connection.mysql.host, connection.mysql.port, connection.mysql.database,
            connection.mysql.user, connection.mysql.password) == (
        "db.internal", 3307, "mlmd", "tfx", "secret")
    sqlite = load_config(overrides={"metadata": {"sqlite_path": "md/store.db"}, "data_root": DATA_ROOT},
                         base_dir=str(tmp_path), require_schema=False)
    assert mlmd.connection_config(sqlite).sqlite.filename_uri == str(tmp_path / "md" / "store.db")


@pytest.mark.parametrize("metadata, message", [
    ({"backend": "postgres"}, "metadata.backend must be sqlite or mysql"),
    ({"backend": "mysql", "port": 0}, "metadata.port between 1 and 65535"),
    ({"backend": "mysql", "host": ""}, "needs metadata.host"),
    ({"hostname": "x"}, "Unknown field"),
])
def test_bad_metadata_config_is_refused(metadata, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"metadata": metadata}, require_schema=False)


def test_run_record_holds_the_config_without_the_password():
    config = load_config(overrides={"metadata": {"backend": "mysql", "password": "secret"},
                                    "spans": [2008]}, require_schema=False)
    node = run_record.make_run_record(config)
    recorded = json.loads(node.exec_properties["config"])
    assert recorded["metadata"]["password"] == run_record.REDACTED
    assert "secret" not in node.exec_properties["config"]
    assert recorded["hyperparameters"]["learning_rate"] == config.hyperparameters.learning_rate
    assert node.exec_properties["config_fingerprint"] == config.fingerprint()
    assert json.loads(node.exec_properties["spans"]) == [2008]
    # No spans configured: the record names every span present, not "all".
    everything = load_config(require_schema=False)
    assert run_record.resolved_spans(everything) == [2007, 2008, 2009]


def test_pipeline_records_the_run_first():
    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(load_config())
    ids = [c.id for c in pipeline.components]
    assert run_record.NODE_ID in ids
    example_gen = next(c for c in pipeline.components if c.id == "CsvExampleGen")
    assert run_record.NODE_ID in {node.id for node in example_gen.upstream_nodes}


def test_format_hyperparameters():
    assert tracking.format_hyperparameters(
        {"learning_rate": 0.01, "hidden_units": [16, 8], "dropout": 0.0, "batch_size": 32,
         "train_steps": 40, "tuned": True}) == "lr=0.01 units=16,8 dropout=0.0 batch=32 steps=40 (tuned)"
    assert tracking.format_hyperparameters({}) == "-"


def test_no_store_yet_means_no_runs(tmp_path):
    config = load_config(overrides={"output_dir": str(tmp_path), "data_root": DATA_ROOT},
                         require_schema=False)
    assert tracking.list_runs(config) == []
    with pytest.raises(tracking.RunNotFoundError, match="No runs of 'penguin'"):
        tracking.get_run(config)
    assert not os.path.exists(config.metadata_path)  # reading history creates no store


def test_unreachable_mysql_is_a_clear_error():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = load_config(overrides={"data_root": DATA_ROOT, "metadata": {
        "backend": "mysql", "port": port, "database": "mlmd"}}, require_schema=False)
    with pytest.raises(tracking.MetadataStoreError, match=f"127.0.0.1:{port}/mlmd"):
        tracking.list_runs(config)


# ---------------------------------------------------------------- MariaDB end to end


@pytest.fixture(scope="module")
def mysql_runs(mariadb, tmp_path_factory):
    """A run against MariaDB, then `tfxt runs rerun` of it with caching off."""
    directory = str(tmp_path_factory.mktemp("mysql_runs"))
    values = {**SMALL_RUN, "metadata": {
        "backend": "mysql", "host": mariadb.host, "port": mariadb.port,
        "database": "mlmd_tracking", "user": mariadb.user, "password": mariadb.password}}
    config_path = write_config(directory, values)
    first = run_pipeline(directory, config_path=config_path)
    assert first.returncode == 0, first.output[-5000:]
    first_run_id = tracking.list_runs(first.config, read_metrics=False)[0].run_id
    rerun_dir = os.path.join(directory, "rerun")
    process = subprocess.run(
        [sys.executable, "-m", "runners.cli.main", "runs", "rerun", first_run_id, "--config",
         config_path, "--set", "enable_cache=false", "--set", f"output_dir={rerun_dir}"],
        cwd=directory, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_SECONDS)
    assert process.returncode == 0, process.stdout[-5000:]
    return first.config, config_path, process.stdout


@pytest.mark.e2e
def test_history_is_read_back_from_mariadb(mysql_runs, mariadb):
    config, _, _ = mysql_runs
    history = tracking.list_runs(config)
    assert len(history) == 2
    first, rerun = history
    assert all(run.state == "COMPLETE" for run in history)
    # Nothing went to SQLite: the store is the MariaDB database.
    assert not os.path.exists(config.metadata_path)
    assert int(mariadb.query("SELECT COUNT(*) FROM Execution", database="mlmd_tracking")) >= 2 * 12
    for run in history:
        assert run.spans == [2007, 2008, 2009]
        assert run.hyperparameters["train_steps"] == 30
        assert run.hyperparameters["learning_rate"] == config.hyperparameters.learning_rate
        assert run.hyperparameters["hidden_units"] == list(config.hyperparameters.hidden_units)
        assert run.config["metadata"]["password"] == run_record.REDACTED
        assert 0.4 <= run.metrics["sparse_categorical_accuracy"] <= 1.0
        assert run.blessed is True and run.pushed_version
    assert first.config_fingerprint == config.fingerprint()
    assert first.cached_nodes == []
    # The rerun recomputed everything from the recorded config (only where outputs go and
    # caching differ), so its hash differs but its experiment does not.
    assert rerun.cached_nodes == [] and rerun.model_id != first.model_id
    assert rerun.config["output_dir"] != first.config["output_dir"]
    assert {k: v for k, v in rerun.config.items() if k not in ("output_dir", "enable_cache")} == {
        k: v for k, v in first.config.items() if k not in ("output_dir", "enable_cache")}


@pytest.mark.e2e
def test_lineage_traces_the_model_to_its_data(mysql_runs):
    config, _, _ = mysql_runs
    first, rerun = tracking.list_runs(config, read_metrics=False)
    items = {item.role: item for item in tracking.lineage(config, rerun.run_id)}
    assert {"examples", "schema", "transform graph", "transformed examples", "model",
            "evaluation", "blessing", "pushed model"} <= set(items)
    assert items["model"].artifact_id == rerun.model_id and not items["model"].reused
    assert items["examples"].producer == "CsvExampleGen" and not items["examples"].reused
    assert "num_files:3" in items["examples"].details["input"]
    assert items["transform graph"].producer == "Transform"
    assert items["schema"].producer == "ImportSchemaGen"
    # The store is shared, so the rerun's Evaluator compared against the first run's blessed
    # model, although the rerun wrote to another output directory.
    assert items["baseline model"].artifact_id == first.model_id
    assert items["pushed model"].details["pushed_version"] == rerun.pushed_version


@pytest.mark.e2e
def test_runs_cli_lists_and_shows(mysql_runs):
    _, config_path, rerun_output = mysql_runs
    config = load_config(config_path, base_dir=os.path.dirname(config_path))
    history = tracking.list_runs(config, read_metrics=False)
    assert f"Re-running {history[0].run_id}" in rerun_output
    result = CliRunner().invoke(main, ["runs", "list", "--config", config_path])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split()[:3] == ["RUN", "ID", "STARTED"]
    assert [line.split()[0] for line in lines[1:]] == [run.run_id for run in history]
    assert "(reused)" not in result.output  # the rerun recomputed everything
    assert config.fingerprint() in lines[1] and "2007-2009" in lines[1]
    shown = CliRunner().invoke(main, ["runs", "show", history[1].run_id, "--config", config_path])
    assert shown.exit_code == 0, shown.output
    assert "transform graph" in shown.output and "Trainer [cached]" not in shown.output
    assert "cached nodes     none" in shown.output
    missing = CliRunner().invoke(main, ["runs", "show", "no-such-run", "--config", config_path])
    assert missing.exit_code != 0 and "No run 'no-such-run'" in missing.output


@pytest.mark.e2e
def test_rerun_reproduces_transformed_data_and_metrics(mysql_runs):
    """Same config, same data, caching off: the same transformed data and metrics up to float32 rounding."""
    config, _, _ = mysql_runs
    first, rerun = tracking.list_runs(config)
    # The Trainer reads rows in the order ExampleGen wrote them; a different order trains a
    # different model. Same rows, same order:
    first_raw, rerun_raw = _example_rows(first), _example_rows(rerun)
    assert first_raw.keys() == {"train", "eval"} and first_raw == rerun_raw
    first_examples = _transformed_rows(first)
    rerun_examples = _transformed_rows(rerun)
    assert first_examples.keys() == rerun_examples.keys() == {"train", "eval"}
    for split in first_examples:
        assert len(first_examples[split]) == len(rerun_examples[split]) > 0
        for a, b in zip(first_examples[split], rerun_examples[split], strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key] == pytest.approx(
                    b[key], rel=RELATIVE_TOLERANCE, abs=ABSOLUTE_TOLERANCE), (split, key)
    assert first.metrics.keys() == rerun.metrics.keys()
    for name, value in first.metrics.items():
        assert rerun.metrics[name] == pytest.approx(
            value, rel=RELATIVE_TOLERANCE, abs=ABSOLUTE_TOLERANCE), name


def _example_rows(run):
    """ExampleGen's raw rows of `run`, split name -> rows in the order it wrote them."""
    uri = run.node("CsvExampleGen").outputs["examples"][0].uri
    return {os.path.basename(split_dir)[len("Split-"):]: read_rows(split_dir)
            for split_dir in sorted(glob.glob(os.path.join(uri, "Split-*")))}


def _transformed_rows(run):
    """Split name -> parsed transformed examples, sorted."""
    import tensorflow as tf

    uri = run.node("Transform").outputs["transformed_examples"][0].uri
    rows = {}
    for split_dir in sorted(glob.glob(os.path.join(uri, "Split-*"))):
        files = sorted(glob.glob(os.path.join(split_dir, "*.gz")))
        parsed = []
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            parsed.append({key: list(feature.float_list.value or feature.int64_list.value)
                           for key, feature in example.features.feature.items()})
        # Compared as sets of rows, with a tolerance: the exact-order claim is on ExampleGen's rows.
        rows[os.path.basename(split_dir)[len("Split-"):]] = sorted(
            parsed, key=lambda row: sorted((k, [round(v, 4) for v in vs]) for k, vs in row.items()))
    return rows


"""End to end: the local runner on the bundled data, checked through ML Metadata and artifacts.

All tests share the session's `pushed_pipeline` run; the unchanged re-run and the bad-data and
weak-model runs each add one run on top of it (the latter two in a copy of its outputs, so the
shared serving directory is never touched by a run that must not push).
"""

import csv
import glob
import io
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_data_validation.utils import schema_util

from models import features
from pipeline import mlmd
from pipeline.components.pusher import model_fingerprint
from pipeline.config import load_config
from pipeline.ops.run import EXIT_DATA_STOPPED, EXIT_NOT_BLESSED
from pipeline.ops.summary import summarize
from pipeline.training import signatures
from serving import payloads
from tests.conftest import DATA_ROOT, SCHEMA_PATH, run_pipeline
from tests.test_pipeline_wiring import CANONICAL_ORDER

pytestmark = pytest.mark.e2e


def _serving_state(serving_model_dir):
    """version -> content hash of every version in the serving directory."""
    versions = sorted(v for v in os.listdir(serving_model_dir) if v.isdigit())
    return {v: model_fingerprint(os.path.join(serving_model_dir, v)) for v in versions}


def test_first_run_executes_every_component(pushed_pipeline):
    summary = summarize(pushed_pipeline.config)
    states = {n.node_id: n.state for n in summary.nodes}
    assert set(CANONICAL_ORDER) <= set(states)
    assert all(state == "COMPLETE" for state in states.values()), states
    assert summary.node("Trainer").seconds > 0


def test_model_is_blessed_and_pushed_as_an_integer_version(pushed_pipeline):
    config = pushed_pipeline.config
    summary = summarize(config)
    assert summary.blessed is True and not summary.blessing_reasons
    assert summary.pushed_version.isdigit()
    assert summary.pushed_path == os.path.join(config.serving_model_dir, summary.pushed_version)
    assert os.path.isfile(os.path.join(summary.pushed_path, "saved_model.pb"))
    assert list(_serving_state(config.serving_model_dir)) == [summary.pushed_version]


def test_evaluation_covers_overall_slices_and_classes(pushed_pipeline):
    summary = summarize(pushed_pipeline.config)
    overall = summary.metrics["Overall"]
    assert overall["sparse_categorical_accuracy"] >= pushed_pipeline.config.thresholds.min_accuracy
    islands = {name for name in summary.metrics if name.startswith("island:")}
    assert islands == {"island:Biscoe", "island:Dream", "island:Torgersen"}
    assert {"sex:female", "sex:male"} <= set(summary.metrics)
    sliced = sum(summary.metrics[name]["example_count"] for name in islands)
    assert sliced == overall["example_count"]
    # Class ids follow LABEL_CLASSES, not frequency (Adelie, Gentoo, Chinstrap in the penguins).
    assert summary.class_names == list(features.LABEL_CLASSES)
    for class_id in range(len(features.LABEL_CLASSES)):
        assert 0.0 <= overall[f"recall/class_{class_id}"] <= 1.0


def test_console_shows_progress_and_the_summary(pushed_pipeline):
    output = pushed_pipeline.output
    for component in ("CsvExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"):
        assert f"▶ {component} running" in output
        assert f"✓ {component} done in" in output
    summary = summarize(pushed_pipeline.config)
    assert f"Pushed: version {summary.pushed_version}" in output
    assert "Blessed: yes" in output and "Anomalies: none" in output
    # The TFLite converter's and interpreter's native log lines are held back
    # (edge.export.native_stderr_quieted).
    assert "✓ EdgeExport done in" in output
    assert "Ignored output_format" not in output and "fully_quantize" not in output
    assert "XNNPACK delegate" not in output


def test_a_run_leaves_nothing_in_its_tmpdir(pushed_pipeline):
    """TFX packages itself into $TMPDIR for each Beam component unless the Beam args name a setup
    file (pipeline.orchestration.beam_pipeline_args); 166 MB per run were left behind that way."""
    assert pushed_pipeline.tmpdir and os.path.isdir(pushed_pipeline.tmpdir)
    assert os.listdir(pushed_pipeline.tmpdir) == []


def _raw_rows(n=6):
    with open(os.path.join(DATA_ROOT, "span-2009", "penguins.csv")) as f:
        return list(csv.DictReader(f))[:n]


def _example(row):
    """A tf.Example of a CSV row, typed as the schema types each column (missing = absent)."""
    schema = schema_util.load_schema_text(SCHEMA_PATH)
    integer = {f.name for f in schema.feature if f.type == schema_util.schema_pb2.INT}
    feature = {}
    for key in features.NUMERIC_FEATURE_KEYS:
        if row[key] and key in integer:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row[key])]))
        elif row[key]:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(row[key])]))
    for key in features.CATEGORICAL_FEATURE_KEYS:
        if row[key]:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[row[key].encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_pushed_model_serves_examples_and_raw_features_alike(pushed_pipeline):
    summary = summarize(pushed_pipeline.config)
    model = tf.saved_model.load(summary.pushed_path)
    assert {signatures.SERVING_DEFAULT, signatures.SERVING_RAW, signatures.TRANSFORM_FEATURES} <= set(
        model.signatures)
    rows = _raw_rows() + [{**_raw_rows(1)[0], "bill_length_mm": "", "sex": ""}]
    by_example = model.signatures[signatures.SERVING_DEFAULT](
        examples=tf.constant([_example(r) for r in rows]))
    raw = {k: tf.constant(v) for k, v in payloads.raw_columns(rows).items()}
    by_raw = model.signatures[signatures.SERVING_RAW](**raw)
    np.testing.assert_allclose(by_example["scores"].numpy(), by_raw["scores"].numpy(), atol=1e-6)
    predicted = [c.decode() for c in by_raw["predicted_class"].numpy()]
    assert predicted[:-1] == [r[features.LABEL_KEY] for r in rows[:-1]]
    assert set(c.decode() for c in by_example["classes"].numpy()[0]) == set(features.LABEL_CLASSES)


@pytest.fixture(scope="module")
def rerun(pushed_pipeline):
    before = _serving_state(pushed_pipeline.config.serving_model_dir)
    run = run_pipeline(os.path.dirname(pushed_pipeline.config_path),
                       config_path=pushed_pipeline.config_path)
    assert run.returncode == 0, run.output[-3000:]
    return before, run


def test_unchanged_rerun_reuses_the_cache_and_pushes_nothing_new(rerun):
    before, run = rerun
    summary = summarize(run.config)
    states = {n.node_id: n.state for n in summary.nodes}
    executed = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator",
                "AnomaliesGate", "Transform", "Trainer", "Evaluator", "ServingModel", "Pusher", "EdgeExport"]
    # Nothing new: the baseline resolver gives the Evaluator the first run's baseline, so the
    # Evaluator, edge export and Pusher are served from the cache like everything before them.
    assert all(states[node] == "CACHED" for node in executed), states
    assert summary.blessed is True and summary.already_serving
    assert summary.pushed_version == list(before)[-1]
    assert _serving_state(run.config.serving_model_dir) == before
    assert "already served as version" in run.output


def test_history_shows_what_the_cached_rerun_reused(rerun):
    """Run tracking on the SQLite store: the cached re-run names the first run's model as its own."""
    from click.testing import CliRunner

    from pipeline.ops import tracking
    from runners.cli.main import main

    _, run = rerun
    history = tracking.list_runs(run.config, read_metrics=False)
    first, cached = history[0], history[-1]
    assert first.cached_nodes == [] and first.config_fingerprint == cached.config_fingerprint
    assert {"RunRecord", "CsvExampleGen", "Transform", "Trainer"} <= set(cached.cached_nodes)
    assert cached.model_id == first.model_id
    items = {item.role: item for item in tracking.lineage(run.config, cached.run_id)}
    assert items["model"].artifact_id == first.model_id and items["model"].reused
    assert items["examples"].producer == "CsvExampleGen" and items["examples"].reused
    # Its (cached) Evaluator's baseline is the first run's: no model was blessed before that one.
    assert "baseline model" not in items
    listed = CliRunner().invoke(main, ["runs", "list", "--config", run.config_path])
    assert listed.exit_code == 0, listed.output
    # The run table ends at the first blank line (the served model's accuracy may follow).
    table = listed.output.strip().split("\n\n")[0]
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "(reused)" in rows[cached.run_id] and "(reused)" not in rows[first.run_id]
    shown = CliRunner().invoke(main, ["runs", "show", cached.run_id, "--config", run.config_path])
    assert shown.exit_code == 0, shown.output
    assert "Trainer [cached]" in shown.output


def test_a_deleted_served_version_is_not_reported_as_served(rerun):
    """After `rm -rf` of the served version, the cached re-run's record must not claim it is served,
    and writing the report must not re-create the version folder with only its model card."""
    from pipeline.ops.report import write_report
    from pipeline.ops.summary import format_summary, summarize

    _, run = rerun
    summary = summarize(run.config)
    version_dir = summary.pushed_path
    moved = version_dir + ".moved-by-test"
    os.rename(version_dir, moved)
    try:
        missing = summarize(run.config)
        first_run_id = mlmd.run_ids(mlmd.open_store(run.config), run.config.pipeline_name)[0]
        first = summarize(run.config, first_run_id)  # its Pusher copied the version: history stays
        text = format_summary(missing, run.config)
        page_path = write_report(run.config, missing.run_id)
        assert not os.path.exists(version_dir)  # no folder holding only assets.extra/
    finally:
        os.rename(moved, version_dir)
    assert missing.pushed_missing and not summary.pushed_missing and not first.pushed_missing
    pushed_line = next(line for line in text.splitlines() if line.startswith("Pushed:"))
    assert "already served" not in pushed_line
    assert f"version {missing.pushed_version}" in pushed_line and "enable_cache=false" in pushed_line
    with open(page_path) as f:
        assert "Not served: version" in f.read()


@pytest.fixture(scope="module")
def baseline_copy(pushed_pipeline, tmp_path_factory):
    """A copy of the pushed run's outputs, so runs that must not push cannot harm the shared one."""
    directory = tmp_path_factory.mktemp("baseline_copy")
    shutil.copytree(pushed_pipeline.config.output_dir, directory / "outputs")
    return directory


def _run_in_process(directory, data_root, **overrides):
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.ops.run import run_and_report
    from pipeline.pipeline import create_pipeline

    config = load_config(overrides={"output_dir": str(directory / "outputs"), "data_root": str(data_root),
                                    "schema_path": SCHEMA_PATH, **overrides}, base_dir=str(directory))
    stream = io.StringIO()
    code = run_and_report(config, lambda: LocalDagRunner().run(create_pipeline(config)), stream)
    return config, code, stream.getvalue()


def _bad_data(directory, edit):
    """The bundled spans with `edit(rows, header)` applied to every span (ExampleGen needs one header)."""
    data_root = directory / "data"
    shutil.copytree(DATA_ROOT, data_root, dirs_exist_ok=True)
    for path in sorted(data_root.glob("span-*/*.csv")):
        with open(path) as f:
            reader = csv.DictReader(f)
            header, rows = list(reader.fieldnames), list(reader)
        header = edit(rows, header)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, header, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return data_root


def _drop_column(rows, header):
    return [h for h in header if h != "body_mass_g"]


def _unseen_category(rows, header):
    rows[5]["island"] = "Atlantis"
    return header


# A non-numeric value, a bad header and blank values stop at CsvExampleGen or the gate too:
# tests/test_data_faults.py runs them up to the gate only.
@pytest.mark.parametrize("edit, column", [
    (_drop_column, "body_mass_g"),
    (_unseen_category, "island"),
], ids=["missing-column", "unseen-category"])
def test_bad_data_stops_before_training_and_keeps_the_pushed_model(baseline_copy, tmp_path, edit, column):
    serving_dir = str(baseline_copy / "outputs" / "serving_model" / "penguin")
    before = _serving_state(serving_dir)
    config, code, output = _run_in_process(baseline_copy, _bad_data(tmp_path, edit))
    assert code == EXIT_DATA_STOPPED
    assert f"column '{column}'" in output and "Run FAILED" in output
    assert "Traceback" not in output
    summary = summarize(config)
    states = {n.node_id: n.state for n in summary.nodes}
    assert states["ExampleValidator"] == "COMPLETE" and states["AnomaliesGate"] == "FAILED"
    assert {"Transform", "Trainer", "Evaluator", "Pusher"}.isdisjoint(states)
    assert any(a.column == column for a in summary.anomalies)
    assert _serving_state(serving_dir) == before
    # The failed run still gets its report: the anomaly, and no model section.
    html = _report_page(config, summary.run_id, output)
    assert f"<td>{column}</td>" in html and re.search(r"Not finished: [^<]*AnomaliesGate", html)
    assert '<section id="model">' not in html


def test_weak_model_is_not_pushed(baseline_copy):
    serving_dir = str(baseline_copy / "outputs" / "serving_model" / "penguin")
    before = _serving_state(serving_dir)
    config, code, output = _run_in_process(
        baseline_copy, DATA_ROOT, hyperparameters={"train_steps": 1, "learning_rate": 0.0001})
    assert code == EXIT_NOT_BLESSED, output[-3000:]
    summary = summarize(config)
    states = {n.node_id: n.state for n in summary.nodes}
    assert states["Transform"] == "CACHED" and states["Trainer"] == "COMPLETE"
    assert summary.blessed is False and summary.pushed_version is None
    # The reason names the slice, the metric and the bound it missed.
    assert "Overall: sparse_categorical_accuracy = " in "\n".join(summary.blessing_reasons)
    assert "needs >= 0.9" in "\n".join(summary.blessing_reasons)
    assert "Blessed: no" in output and "Pushed: no" in output
    assert _serving_state(serving_dir) == before
    html = _report_page(config, summary.run_id, output)
    assert 'data-blessed="false"' in html and "accuracy must be &ge; 0.9" in html
    assert '<section id="serving">' in html and "This run pushed no model" in html


def _report_page(config, run_id, output):
    from pipeline.ops.report import REPORT_FILE, report_dir

    path = os.path.join(report_dir(config, run_id), REPORT_FILE)
    assert f"Report: {path}" in output
    with open(path) as f:
        return f.read()


def test_tfxt_summary_reads_a_past_run(pushed_pipeline):
    import subprocess
    import sys

    process = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "tfxt"), "summary", "--config",
         pushed_pipeline.config_path], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    assert "Evaluation (eval split):" in process.stdout
    assert glob.glob(os.path.join(pushed_pipeline.config.output_dir, "logs", "*.log"))

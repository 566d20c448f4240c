"""Monitoring on real runs: drift and decay recorded in ML Metadata, `tfxt runs` and `tfxt monitor`.

Builds on the shared `pushed_pipeline` run (spans 2007-2009, a pushed model).
One more run, on a copy of its metadata store and serving directory, adds a
span 2010 made worse on purpose: body mass shifted by 1000 g (inside the
schema's domain, so only drift can see it) and the species labels rotated,
so the served model is mostly wrong on it. That run reads the served model's
accuracy and then stops at the drift gate, before Transform, so it is cheap.
Skew checks need no run of their own: they compare rows with the pushed
model's training statistics.
"""

import json
import os
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.ops import monitoring, synthetic, tracking
from runners.cli.main import main
from serving import versions
from tests.conftest import DATA_ROOT, run_pipeline

pytestmark = pytest.mark.e2e
ROTATED = {"Adelie": "Gentoo", "Gentoo": "Chinstrap", "Chinstrap": "Adelie"}


def _write_worse_span(data_root: str) -> None:
    path, = synthetic.write_spans(data_root, 120, spans=(2010,), seed=11)
    frame = pd.read_csv(path)
    frame["body_mass_g"] = (frame["body_mass_g"] + 1000).clip(upper=7000).astype("Int64")
    frame["species"] = frame["species"].map(ROTATED)
    frame.to_csv(path, index=False, na_rep="")


@pytest.fixture(scope="module")
def drifted_run(pushed_pipeline, tmp_path_factory):
    """A second run, on a copy of the pushed run's store, with the worse span 2010 added."""
    directory = tmp_path_factory.mktemp("drifted_run")
    outputs = directory / "outputs"
    source = pushed_pipeline.config.output_dir
    for name in ("metadata", "serving_model"):
        shutil.copytree(os.path.join(source, name), outputs / name)
    data_root = str(directory / "data")
    shutil.copytree(DATA_ROOT, data_root, ignore=shutil.ignore_patterns("README*"))
    _write_worse_span(data_root)
    return run_pipeline(str(directory), {"data_root": data_root, "edge": {"enabled": False}})


def _version_dirs(config):
    return versions.ready_versions(config.serving_model_dir)


def test_drift_stops_the_run_before_transform_with_one_line_naming_it(drifted_run, pushed_pipeline):
    assert drifted_run.returncode == 4, drifted_run.output[-3000:]  # data stopped (README, Exit codes)
    failed = next(line for line in drifted_run.output.splitlines() if line.startswith("Run FAILED:"))
    assert failed.startswith("Run FAILED: Drift from span 2009 to span 2010, feature 'body_mass_g': "
                             "Jensen-Shannon divergence ")
    assert "> threshold 0.2" in failed
    assert "Traceback" not in drifted_run.output
    run = tracking.get_run(drifted_run.config, read_metrics=False)
    ran = {node.node_id: node.state for node in run.nodes}
    assert ran["DriftGate"] == "FAILED" and "Transform" not in ran
    assert _version_dirs(drifted_run.config) == _version_dirs(pushed_pipeline.config)


def test_drift_is_recorded_at_the_worse_span_and_not_between_the_bundled_spans(drifted_run):
    results = monitoring.drift_results(drifted_run.config)
    assert [(r.previous_span, r.newest_span) for r in results] == [(2008, 2009), (2009, 2010)]
    bundled, worse = results
    assert bundled.drifted == [] and len(bundled.drifts) == 7
    assert "body_mass_g" in [d.feature for d in worse.drifted]
    assert all(d.value <= d.threshold for d in worse.drifts if d.feature in ("bill_length_mm", "sex"))


def test_the_served_models_accuracy_on_the_new_span_is_a_retrain_trigger(drifted_run, pushed_pipeline):
    # The first run's record and the drifted run's; a cached re-run of the shared run by another test
    # module may have added one in between.
    records = monitoring.decay_records(drifted_run.config)
    first, second = records[0], records[-1]
    assert not first.evaluated and first.reason == "no blessed model yet"
    served_model = tracking.get_run(pushed_pipeline.config, read_metrics=False).model_id
    assert second.evaluated and second.model_id == served_model
    assert (second.previous_span, second.newest_span) == (2009, 2010)
    assert second.previous_accuracy > 0.9 and second.newest_accuracy < 0.5
    assert second.retrain_trigger and "> 0.05" in second.reason
    assert monitoring.accuracy_by_model([first, second]) == {
        served_model: {2009: second.previous_accuracy, 2010: second.newest_accuracy}}


def test_runs_show_each_models_accuracy_span_by_span(drifted_run, pushed_pipeline):
    served_model = tracking.get_run(pushed_pipeline.config, read_metrics=False).model_id
    second = monitoring.decay_records(drifted_run.config)[-1]  # the drifted run's
    assert second.evaluated
    result = CliRunner().invoke(main, ["runs", "models", "--config", drifted_run.config_path])
    assert result.exit_code == 0, result.output
    # One line per model; a re-run of the shared run by another test module may add span 2008 before.
    [line] = [row for row in result.output.splitlines() if row.strip().startswith(f"model #{served_model} ")]
    assert line.endswith(f"2009: {second.previous_accuracy:.3f}  2010: {second.newest_accuracy:.3f}")
    assert f"retrain trigger in run {second.run_id}: model #{served_model} accuracy fell" in result.output
    result = CliRunner().invoke(main, ["runs", "list", "--config", drifted_run.config_path])
    assert result.exit_code == 0, result.output
    rows = result.output.strip().splitlines()[1:]
    first_row, second_row = rows[0], rows[-1]  # the shared run's first run, and the drifted run
    assert first_row.endswith("none yet")
    assert second_row.startswith(second.run_id) and second_row.endswith(
        f"#{served_model} 2009: {second.previous_accuracy:.3f} -> 2010: "
        f"{second.newest_accuracy:.3f} RETRAIN")
    listed = json.loads(CliRunner().invoke(
        main, ["runs", "list", "--json", "--config", drifted_run.config_path]).output)
    assert listed[-1]["served_model_decay"]["retrain_trigger"] is True


# --- Training/serving skew against the pushed model ---------------------------------------


def _bundled_rows():
    return synthetic.read_source(DATA_ROOT)


def _skewed(frame):
    frame = frame.copy()
    frame["body_mass_g"] = (frame["body_mass_g"] + 1000).clip(upper=7000)
    frame["island"] = "Biscoe"
    return frame


def test_clean_serving_rows_show_no_skew(pushed_pipeline):
    rows = _bundled_rows().drop(columns=["species"]).to_dict("records")
    report = monitoring.check_skew(pushed_pipeline.config, rows)
    assert report.rows == len(rows) and len(report.skews) == 6
    assert report.skewed == [], monitoring.format_skew(report)


def test_skewed_serving_rows_are_found_per_feature(pushed_pipeline):
    report = monitoring.check_skew(pushed_pipeline.config, _skewed(_bundled_rows()).to_dict("records"))
    assert sorted(s.feature for s in report.skewed) == ["body_mass_g", "island"]
    assert report.version == _version_dirs(pushed_pipeline.config)[-1]


def _skew_cli(run, *args):
    return CliRunner().invoke(main, ["monitor", "skew", "--config", run.config_path, *args])


def test_skew_cli_exit_codes_on_a_csv_and_a_request_log(pushed_pipeline, tmp_path):
    clean = tmp_path / "clean.csv"
    _bundled_rows().to_csv(clean, index=False)
    result = _skew_cli(pushed_pipeline, "--csv", str(clean))
    assert result.exit_code == 0, result.output
    assert "No skew past the thresholds." in result.output
    log = tmp_path / "requests.jsonl"
    skewed = _skewed(_bundled_rows()).drop(columns=["species", "year"])
    lines = [json.dumps({"status": "OK", "rows": [row]}) for row in skewed.to_dict("records")]
    log.write_text("\n".join(lines + ["{truncated", "[1, 2]"]) + "\n")
    result = _skew_cli(pushed_pipeline, "--log", str(log))
    assert result.exit_code == 1, result.output
    assert "Skipped 2 malformed line(s)" in result.output
    assert "SKEW feature 'body_mass_g': Jensen-Shannon divergence" in result.output


def test_skew_cli_on_an_empty_or_missing_log_says_so(pushed_pipeline, tmp_path):
    empty = tmp_path / "requests.jsonl"
    empty.write_text("")
    result = _skew_cli(pushed_pipeline, "--log", str(empty))
    assert result.exit_code == 2
    assert f"{empty} holds no serving rows" in result.output
    result = _skew_cli(pushed_pipeline, "--log", str(tmp_path / "none.jsonl"))
    assert result.exit_code == 2 and "No request log at" in result.output

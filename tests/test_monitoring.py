"""Monitoring without a pipeline run: drift through TFX's DistributionValidator on statistics of
synthetic spans, the drift gate's actions, the monitoring config, and the request log reader.

The end-to-end checks (drift and decay recorded by a real run, skew against a
pushed model) are in tests/test_monitoring_e2e.py.
"""

import json
import os

import pandas as pd
import pytest

from pipeline.components import drift_gate
from pipeline.config import ConfigError, MonitoringConfig, load_config
from pipeline.ops import synthetic
from serving import request_log

ROWS_PER_SPAN = 120  # about the size of a bundled span


@pytest.fixture(scope="module")
def span_frames(tmp_path_factory):
    """Three synthetic spans from one profile, and a copy of the last with body mass shifted."""
    out = tmp_path_factory.mktemp("spans")
    paths = synthetic.write_spans(str(out), 3 * ROWS_PER_SPAN, spans=(2010, 2011, 2012), seed=3)
    frames = {2010 + i: pd.read_csv(p) for i, p in enumerate(paths)}
    shifted = frames[2012].copy()
    shifted["body_mass_g"] = (shifted["body_mass_g"] + 1000).clip(upper=7000)
    frames["shifted"] = shifted
    return frames


def _statistics(frame):
    import tensorflow_data_validation as tfdv

    return tfdv.generate_statistics_from_dataframe(frame)


def _validate(tmp_path, newest, previous, monitoring=None):
    """Runs TFX's DistributionValidator executor on two spans' statistics; returns read_drift."""
    from tfx.components.distribution_validator import executor
    from tfx.dsl.io import fileio
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import json_utils

    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = os.path.join(str(tmp_path), "statistics")
    statistics.split_names = artifact_utils.encode_split_names(
        [drift_gate.NEWEST_SPLIT, drift_gate.PREVIOUS_SPLIT])
    for split, frame in ((drift_gate.NEWEST_SPLIT, newest), (drift_gate.PREVIOUS_SPLIT, previous)):
        fileio.makedirs(os.path.join(statistics.uri, f"Split-{split}"))
        with fileio.open(os.path.join(statistics.uri, f"Split-{split}", "FeatureStats.pb"), "wb") as f:
            f.write(_statistics(frame).SerializeToString())
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = os.path.join(str(tmp_path), "anomalies")
    executor.Executor().Do(
        {"statistics": [statistics], "baseline_statistics": [statistics]},
        {"anomalies": [anomalies]},
        {"distribution_validator_config": drift_gate.distribution_validator_config(
            monitoring or MonitoringConfig()),
         "include_split_pairs": json_utils.dumps([[drift_gate.NEWEST_SPLIT, drift_gate.PREVIOUS_SPLIT]])})
    return drift_gate.read_drift(anomalies.uri)


def _components(**overrides):
    from pipeline.pipeline import create_pipeline

    return {c.id: c for c in create_pipeline(load_config(overrides=overrides)).components}


def test_monitoring_nodes_compare_the_newest_two_spans_between_the_schema_gate_and_transform():
    components = _components()
    validator, decay = components["DriftValidator"], components["ModelDecay"]
    # Two artifacts: Airflow's launcher refuses one artifact under two input keys.
    assert validator.inputs["statistics"].producer_component_id == "SpanStatisticsGen"
    assert validator.inputs["baseline_statistics"].producer_component_id == "BaselineStatistics"
    assert components["BaselineStatistics"].exec_properties["split"] == "previous"
    assert json.loads(validator.exec_properties["include_split_pairs"]) == [["newest", "previous"]]
    assert decay.inputs["model"].producer_component_id == "served_model_resolver"
    assert (decay.exec_properties["newest_span"], decay.exec_properties["previous_span"]) == (2009, 2008)
    assert components["DriftGate"].exec_properties["action"] == "stop"
    assert "AnomaliesGate" in {c.id for c in components["SpanExampleGen"].upstream_nodes}
    assert "ModelDecay" in {c.id for c in components["DriftGate"].upstream_nodes}
    assert "DriftGate" in {c.id for c in components["Transform"].upstream_nodes}


@pytest.mark.parametrize("overrides", [{"spans": [2009]}, {"monitoring": {"enabled": False}}],
                         ids=["one-span", "disabled"])
def test_monitoring_nodes_are_left_out_with_one_span_or_when_disabled(overrides):
    components = _components(**overrides)
    assert {"SpanExampleGen", "DriftValidator", "DriftGate", "ModelDecay"}.isdisjoint(components)
    assert {"AnomaliesGate", "Transform", "Pusher"} <= set(components)


def test_clean_spans_show_no_drift_at_the_defaults(span_frames, tmp_path):
    drifts = _validate(tmp_path, span_frames[2012], span_frames[2011])
    compared = {d.feature: d.measure for d in drifts}
    assert compared["body_mass_g"] == drift_gate.JSD and compared["island"] == drift_gate.L_INFINITY
    assert compared["species"] == drift_gate.L_INFINITY
    assert [d for d in drifts if d.drifted] == []


def test_a_shifted_span_drifts_in_the_shifted_feature_only(span_frames, tmp_path):
    drifts = _validate(tmp_path, span_frames["shifted"], span_frames[2011])
    assert [d.feature for d in drifts if d.drifted] == ["body_mass_g"]
    body_mass = next(d for d in drifts if d.feature == "body_mass_g")
    assert body_mass.value > body_mass.threshold == MonitoringConfig().numeric_drift_threshold


def test_a_per_feature_threshold_wins_over_the_default(span_frames, tmp_path):
    monitoring = MonitoringConfig(feature_thresholds={"body_mass_g": 1.0})
    drifts = _validate(tmp_path, span_frames["shifted"], span_frames[2011], monitoring)
    assert [d for d in drifts if d.drifted] == []
    assert next(d for d in drifts if d.feature == "body_mass_g").threshold == 1.0


def test_drift_comparators_in_the_schema_alone_find_nothing(span_frames):
    """What ExampleValidator does: the same comparators, but TFDV gets no previous statistics."""
    import tensorflow_data_validation as tfdv

    shifted = _statistics(span_frames["shifted"])
    schema = tfdv.infer_schema(_statistics(span_frames[2011]))
    for name, (measure, threshold) in drift_gate.feature_thresholds(MonitoringConfig()).items():
        tfdv.get_feature(schema, name).drift_comparator.CopyFrom(
            drift_gate.feature_comparator(measure, threshold))
    anomalies = tfdv.validate_statistics(shifted, schema)
    assert "body_mass_g" not in anomalies.anomaly_info
    assert list(anomalies.drift_skew_info) == []
    with_previous = tfdv.validate_statistics(
        shifted, schema, previous_statistics=_statistics(span_frames[2011]))
    assert "body_mass_g" in with_previous.anomaly_info


def _gate(anomalies_uri, action):
    from tfx.types import standard_artifacts

    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = anomalies_uri
    gate = drift_gate.DriftGate.EXECUTOR_SPEC.executor_class._FUNCTION  # noqa: SLF001 - the plain function
    return gate(anomalies=anomalies, action=action, newest_span=2012, previous_span=2011)


def test_the_gate_stops_with_one_line_per_drifted_feature_or_warns(span_frames, tmp_path):
    _validate(tmp_path, span_frames["shifted"], span_frames[2011])
    with pytest.raises(drift_gate.DriftError) as raised:
        _gate(str(tmp_path / "anomalies"), "stop")
    first_line = str(raised.value).splitlines()[0]
    assert first_line.startswith("Drift from span 2011 to span 2012, feature 'body_mass_g': "
                                 "Jensen-Shannon divergence ")
    assert first_line.endswith("> threshold 0.2")
    assert _gate(str(tmp_path / "anomalies"), "warn") is None


def test_drift_is_read_and_acted_on_through_fileio_on_a_non_local_filesystem(span_frames, ram_filesystem):
    base = ram_filesystem + "monitoring/drift"
    drifts = _validate(base, span_frames["shifted"], span_frames[2011])
    assert [d.feature for d in drifts if d.drifted] == ["body_mass_g"]
    with pytest.raises(drift_gate.DriftError):
        _gate(base + "/anomalies", "stop")


def test_the_gate_passes_clean_spans(span_frames, tmp_path):
    _validate(tmp_path, span_frames[2012], span_frames[2011])
    assert _gate(str(tmp_path / "anomalies"), "stop") is None


@pytest.mark.parametrize("overrides, message", [
    ({"drift_action": "halt"}, "monitoring.drift_action must be one of stop, warn"),
    ({"numeric_drift_threshold": 2}, "monitoring.numeric_drift_threshold must lie in [0, 1]"),
    ({"feature_thresholds": {"body_mass_g": "x"}},
     "monitoring.feature_thresholds.body_mass_g must be a number"),
    ({"feature_thresholds": {"body_mass_g": 1.5}},
     "monitoring.feature_thresholds.body_mass_g must lie in [0, 1]"),
])
def test_bad_monitoring_config_is_one_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(overrides={"monitoring": overrides})


def test_feature_thresholds_from_set_flags_are_numbers_and_unknown_features_are_refused():
    config = load_config(overrides={"monitoring": {"feature_thresholds": {"body_mass_g": "0.3"}}})
    assert config.monitoring.feature_thresholds == {"body_mass_g": 0.3}
    with pytest.raises(ConfigError, match="unknown feature.*body_mass"):
        drift_gate.feature_thresholds(MonitoringConfig(feature_thresholds={"body_mass": 0.3}))


def test_request_log_reader_counts_malformed_lines_and_reads_rotated_files_oldest_first(tmp_path):
    path = str(tmp_path / "requests.jsonl")
    entry = {"status": "OK", "rows": [{"island": "Dream", "body_mass_g": 4000}]}
    with open(path + ".2", "w") as f:  # the oldest rotated file
        f.write(json.dumps({**entry, "rows": [{"island": "Biscoe"}]}) + "\n")
    with open(path + ".1", "w") as f:
        f.write("{not json\n" + json.dumps({"status": "INVALID_ARGUMENT"}) + "\n")
    with open(path, "w") as f:
        f.write(json.dumps(entry) + "\n" + json.dumps({"rows": "oops"}) + "\n\n")
    rows, malformed = request_log.read_rows(path)
    assert [r["island"] for r in rows] == ["Biscoe", "Dream"]
    assert malformed == 2


def test_request_log_reader_on_a_missing_log(tmp_path):
    with pytest.raises(FileNotFoundError, match="No request log"):
        request_log.read_rows(str(tmp_path / "requests.jsonl"))

"""Drift between spans: TFX's DistributionValidator config, and `DriftGate`, which acts on its result.

`create_pipeline` reads the newest span and the span before it as two splits of
one Examples artifact (`SpanExampleGen`), computes their statistics
(`SpanStatisticsGen`) and hands them to TFX's own DistributionValidator, which
compares them with TFDV's drift comparators: Jensen-Shannon divergence for
numeric features, L-infinity distance for categorical ones and the label.
`distribution_validator_config` builds its per-feature thresholds from
`config.monitoring`.

ExampleValidator cannot do this: it calls TFDV without previous statistics, so
drift comparators in the schema are never evaluated.

`BaselineStatistics` gives the previous span's statistics an artifact of their own, the
validator's `baseline_statistics`.

`DriftGate` reads the DistributionValidator's anomalies: with
`monitoring.drift_action` "stop" it fails the run before Transform, with one
line per drifted feature naming the measure, value and threshold, so the pushed
model stays as it is; with "warn" it logs the same lines and lets the run go
on. `read_drift` is what the gate, the run history and `tfxt monitor drift` use.
"""

import logging
import os
from typing import List, NamedTuple

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics

from models import features
from pipeline.components.anomalies_gate import DataValidationError
from pipeline.config import ConfigError, MonitoringConfig

NODE_ID = "DriftGate"
VALIDATOR_NODE_ID = "DriftValidator"
BASELINE_NODE_ID = "BaselineStatistics"
# The splits of SpanExampleGen's output, and the pair DistributionValidator compares.
NEWEST_SPLIT = "newest"
PREVIOUS_SPLIT = "previous"
SPLIT_PAIR_DIR = f"SplitPair-{NEWEST_SPLIT}_{PREVIOUS_SPLIT}"
JSD = "Jensen-Shannon divergence"
L_INFINITY = "L-infinity distance"


class DriftError(DataValidationError):
    """The newest span's distribution moved past a configured threshold."""


class Drift(NamedTuple):
    """One feature's comparison of the newest span with the previous one."""

    feature: str
    measure: str  # JSD or L_INFINITY, or "not comparable"
    value: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.measure == "not comparable" or self.value > self.threshold

    def describe(self) -> str:
        if self.measure == "not comparable":
            return f"feature '{self.feature}': could not be compared (no values in one of the spans)"
        sign = ">" if self.drifted else "<="
        return (f"feature '{self.feature}': {self.measure} {self.value:.4f} {sign} "
                f"threshold {self.threshold:g}")


def feature_thresholds(monitoring: MonitoringConfig) -> dict:
    """Feature name -> (measure, threshold) for every model feature and the label."""
    unknown = sorted(set(monitoring.feature_thresholds) - set(features.feature_keys())
                     - {features.LABEL_KEY})
    if unknown:
        raise ConfigError(f"monitoring.feature_thresholds names unknown feature(s) {', '.join(unknown)}; "
                          f"known: {', '.join(features.feature_keys() + (features.LABEL_KEY,))}.")
    result = {}
    for name in features.NUMERIC_FEATURE_KEYS:
        result[name] = (JSD, monitoring.feature_thresholds.get(name, monitoring.numeric_drift_threshold))
    for name in features.CATEGORICAL_FEATURE_KEYS + (features.LABEL_KEY,):
        result[name] = (L_INFINITY,
                        monitoring.feature_thresholds.get(name, monitoring.categorical_drift_threshold))
    return result


def feature_comparator(measure: str, threshold: float):
    """A tensorflow_metadata FeatureComparator for one measure and threshold."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    comparator = schema_pb2.FeatureComparator()
    if measure == JSD:
        comparator.jensen_shannon_divergence.threshold = threshold
    else:
        comparator.infinity_norm.threshold = threshold
    return comparator


def distribution_validator_config(monitoring: MonitoringConfig):
    """DistributionValidator's config: one comparator per feature, from `monitoring`."""
    from tensorflow_metadata.proto.v0 import path_pb2
    from tfx.proto import distribution_validator_pb2

    config = distribution_validator_pb2.DistributionValidatorConfig()
    for name, (measure, threshold) in feature_thresholds(monitoring).items():
        config.default_slice_config.feature.add(
            path=path_pb2.Path(step=[name]),
            distribution_comparator=feature_comparator(measure, threshold))
    return config


def read_drift(anomalies_uri: str) -> List[Drift]:
    """Every compared feature of a DistributionValidator output, drifted or not, by name."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    path = os.path.join(anomalies_uri, SPLIT_PAIR_DIR, "SchemaDiff.pb")
    if not fileio.exists(path):
        return []  # no baseline statistics: DistributionValidator rubber-stamped
    with fileio.open(path, "rb") as f:
        anomalies = anomalies_pb2.Anomalies.FromString(f.read())
    rows = {}
    for info in anomalies.drift_skew_info:
        for measurement in info.drift_measurements:
            measure = (JSD if measurement.type == measurement.JENSEN_SHANNON_DIVERGENCE
                       else L_INFINITY)
            rows[".".join(info.path.step)] = Drift(".".join(info.path.step), measure,
                                                   measurement.value, measurement.threshold)
    for name, info in anomalies.anomaly_info.items():
        if any(r.type == anomalies_pb2.AnomalyInfo.STATS_NOT_AVAILABLE for r in info.reason):
            rows[name] = Drift(name, "not comparable", float("nan"), float("nan"))
    return [rows[name] for name in sorted(rows)]


def drift_message(drifts: List[Drift], newest_span: int, previous_span: int) -> str:
    """The gate's message: one line per drifted feature."""
    return "\n".join(f"Drift from span {previous_span} to span {newest_span}, {d.describe()}"
                     for d in drifts if d.drifted)


@component
def BaselineStatistics(statistics: InputArtifact[ExampleStatistics],  # noqa: N802 - a component name
                       baseline: OutputArtifact[ExampleStatistics], split: Parameter[str]) -> None:
    """Copies the `split` statistics of `statistics` into `baseline`, an artifact of their own.

    Why a copy: DistributionValidator could read both spans from SpanStatisticsGen's one artifact,
    as `statistics` and as `baseline_statistics`, but TFX's Airflow launcher records one ML
    Metadata event per input key, and MLMD refuses a second event for the same artifact, so the
    task failed under Airflow. The statistics of one span are a few kilobytes.
    """
    baseline.split_names = artifact_utils.encode_split_names([split])
    source = artifact_utils.get_split_uri([statistics], split)
    target = artifact_utils.get_split_uri([baseline], split)
    fileio.makedirs(target)
    for name in fileio.listdir(source):
        fileio.copy(os.path.join(source, name), os.path.join(target, name), overwrite=True)


@component
def DriftGate(anomalies: InputArtifact[ExampleAnomalies],  # noqa: N802 - a component name
              action: Parameter[str], newest_span: Parameter[int], previous_span: Parameter[int]) -> None:
    """Fails the run (action "stop") or logs (action "warn") when a feature drifted."""
    drifts = read_drift(anomalies.uri)
    if not any(d.drifted for d in drifts):
        logging.info("No drift from span %d to span %d.", previous_span, newest_span)
        return
    message = drift_message(drifts, newest_span, previous_span)
    if action == "warn":
        logging.warning("%s\n(monitoring.drift_action is warn: the run goes on.)", message)
        return
    raise DriftError(
        message + "\nThe run stops before Transform and the pushed model is unchanged. If the "
        "change is expected, raise monitoring.feature_thresholds.<feature> or set "
        "monitoring.drift_action=warn.")

"""`AnomaliesGate`: stops the run before Transform when the data is not fit to train on.

TFX's ExampleValidator only records anomalies: nothing downstream stops on them.
Transform depends on this gate, so bad data stops the run before Transform and
Trainer, the Pusher never runs, and the previously pushed model stays as it is.
`create_pipeline` wires it after ExampleValidator; the run summary reads its rows.

The gate fails on any of:
- an anomaly ExampleValidator found against the curated schema;
- a split with fewer than `validation.min_examples_per_split` examples (`count_problems`):
  a header-only span passes the schema, then Transform runs on 0 rows and training fails later;
- too many blank values in a column the schema allows to be blank (`blank_problems`);
- a numeric column whose INT/FLOAT type disagrees with `INT_FEATURE_KEYS` (`int_problems`), by
  which clients type their values;
- a categorical column or the label (models/features.py) that the schema does not type BYTES
  (`type_problems`):
  Transform, serving and edge treat categoricals as text, and would otherwise fail only after
  training, naming no column.

`read_anomalies` turns ExampleValidator's output into plain (split, column,
description) rows; the gate and the run summary both use it.
"""

import json
import os
from typing import Dict, List, NamedTuple

from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics, Schema

SCHEMA_DIFF_FILE = "SchemaDiff.pb"  # the file ExampleValidator writes per split
STATISTICS_FILE = "FeatureStats.pb"  # the file StatisticsGen writes per split


class Anomaly(NamedTuple):
    split: str
    column: str
    description: str


def read_anomalies(anomalies_uri: str) -> List[Anomaly]:
    """Every anomaly of every split under an ExampleAnomalies artifact URI."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    rows = []
    for entry, path in _split_files(anomalies_uri, SCHEMA_DIFF_FILE):
        split = entry[len("Split-"):]
        proto = _read_binary(path, anomalies_pb2.Anomalies())
        for column, info in sorted(proto.anomaly_info.items()):
            rows.append(Anomaly(split, column, _describe(info)))
        if proto.HasField("dataset_anomaly_info"):
            rows.append(Anomaly(split, "<dataset>", _describe(proto.dataset_anomaly_info)))
    return rows


def format_anomalies(anomalies: List[Anomaly]) -> str:
    """One line per anomaly, naming the split (unless it concerns every split) and the column."""
    return "\n".join(f"  {f'split {a.split!r}, ' if a.split else ''}column '{a.column}': {a.description}"
                     for a in anomalies)


def _describe(info) -> str:
    reasons = [r.description or r.short_description for r in info.reason]
    return "; ".join(r for r in reasons if r) or info.description or info.short_description


def _split_files(uri: str, file_name: str):
    """(Split-<name>, path) of each split folder under an artifact URI that holds `file_name`."""
    for entry in sorted(fileio.listdir(uri)):
        entry = entry.rstrip("/")  # object stores list folders with a trailing slash
        path = os.path.join(uri, entry, file_name)
        if entry.startswith("Split-") and fileio.exists(path):
            yield entry, path


def _read_binary(path: str, proto):
    with fileio.open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def read_statistics(statistics_uri: str) -> Dict[str, object]:
    """split -> its DatasetFeatureStatistics, from a StatisticsGen artifact URI."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    return {entry[len("Split-"):]:
            _read_binary(path, statistics_pb2.DatasetFeatureStatisticsList()).datasets[0]
            for entry, path in _split_files(statistics_uri, STATISTICS_FILE)}


def count_problems(statistics: Dict[str, object], min_examples: int) -> List[Anomaly]:
    """A row for each split with fewer than `min_examples` examples."""
    return [Anomaly(split, "<dataset>",
                    f"{int(stats.num_examples)} examples, fewer than validation.min_examples_per_split "
                    f"({min_examples}): a span is empty or too small. Add rows, select more spans, or "
                    "lower the minimum")
            for split, stats in sorted(statistics.items()) if stats.num_examples < min_examples]


def blank_problems(statistics: Dict[str, object], schema, max_fraction: float,
                   fractions: Dict[str, float]) -> List[Anomaly]:
    """A row for each split and column with more blank values than its tolerance allows.

    TFDV cannot express this: CsvExampleGen writes a blank cell as an empty value list, which
    TFDV counts as present, so `presence.min_fraction` never fires; `value_count { min: 1 }` does
    fire, but with no tolerance at all, which is right only for required columns. So the schema
    marks a column that may be blank with `value_count { min: 0 }`, and this check counts the
    examples without a value from the statistics: examples - values, for a column of at most one
    value per example (ExampleValidator reports more than `value_count.max` itself).
    """
    may_be_blank = {f.name for f in schema.feature if f.HasField("value_count") and f.value_count.min == 0}
    rows = []
    for split, stats in sorted(statistics.items()):
        for feature in stats.features:
            name = feature.path.step[0] if feature.path.step else feature.name
            common = _common_stats(feature)
            if (name not in may_be_blank or common is None or common.max_num_values > 1
                    or not stats.num_examples):
                continue
            blank = stats.num_examples - common.tot_num_values
            tolerance = fractions.get(name, max_fraction)
            if blank / stats.num_examples > tolerance:
                setting = (f"validation.blank_fractions.{name}" if name in fractions
                           else "validation.max_blank_fraction")
                rows.append(Anomaly(split, name, (
                    f"{int(blank)} of {int(stats.num_examples)} examples "
                    f"({blank / stats.num_examples:.0%}) are blank, more than {setting} ({tolerance:.0%}) "
                    "allows. Fill in the values, or raise the tolerance for this column in the config")))
    return rows


def _common_stats(feature):
    kind = feature.WhichOneof("stats")
    return getattr(feature, kind).common_stats if kind in ("num_stats", "string_stats") else None


def type_problems(schema, text_columns: List[str], label_key: str = "") -> List[Anomaly]:
    """A row for each column that must be text (a categorical or the label) but is typed otherwise."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    types = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
    return [Anomaly("", name, (
        f"{'the label' if name == label_key else 'categorical'} in models/features.py, but "
        f"schema/schema.pbtxt types it {types[name]}. Categorical columns and the label are text: set "
        "its type to BYTES in the schema (and drop its int_domain or float_domain; CsvExampleGen then "
        "reads the numbers as text; `tfxt schema refresh` does this)"
        + ("" if name == label_key else ", or declare it in NUMERIC_FEATURE_KEYS")))
        for name in text_columns if types.get(name, "BYTES") != "BYTES"]


def int_problems(schema, numeric_columns: List[str], int_columns: List[str]) -> List[Anomaly]:
    """A row for each numeric column whose INT/FLOAT type in the schema disagrees with INT_FEATURE_KEYS.

    Clients and the serving_raw signature type a numeric value by INT_FEATURE_KEYS (TF Serving
    refuses 192.0 for an int64 and 45 for a float), so it must say what the schema says.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    types = {f.name: f.type for f in schema.feature}
    rows = []
    for name in numeric_columns:
        if types.get(name) == schema_pb2.INT and name not in int_columns:
            rows.append(Anomaly("", name, (
                "schema/schema.pbtxt types it INT, but models/features.py does not list it in "
                "INT_FEATURE_KEYS: add it there (clients then send it as a whole number), or type it "
                "FLOAT in the schema")))
        elif types.get(name) == schema_pb2.FLOAT and name in int_columns:
            rows.append(Anomaly("", name, (
                "listed in INT_FEATURE_KEYS in models/features.py, but schema/schema.pbtxt types it "
                "FLOAT: remove it from INT_FEATURE_KEYS, or type it INT in the schema")))
    return rows


def read_schema(schema_uri: str):
    """The Schema proto of a Schema artifact URI (ImportSchemaGen writes schema.pbtxt)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    with fileio.open(os.path.join(schema_uri, "schema.pbtxt"), "r") as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


class DataValidationError(RuntimeError):
    """The input data does not match the curated schema or the config's validation section."""


def gate_problems(anomalies_uri: str, statistics_uri: str, schema_uri: str, *, min_examples_per_split: int,
                  max_blank_fraction: float, blank_fractions_json: str, text_columns_json: str,
                  label_key: str, numeric_columns_json: str, int_columns_json: str) -> List[Anomaly]:
    """Everything the gate fails on (module docstring), from its input URIs and parameters.

    The rehearsal's timeline (`pipeline.ops.rehearsal`) calls it with a recorded gate
    execution's inputs and parameters (by name) to say why a run stopped.
    """
    stats = read_statistics(statistics_uri)
    found = count_problems(stats, min_examples_per_split)
    # Blank fractions of a too-small split say nothing; its row count is the problem.
    stats = {split: s for split, s in stats.items() if s.num_examples >= min_examples_per_split}
    curated = read_schema(schema_uri)
    text_columns = json.loads(text_columns_json) + [label_key]
    return found + (type_problems(curated, text_columns, label_key)
                    + int_problems(curated, json.loads(numeric_columns_json), json.loads(int_columns_json))
                    + read_anomalies(anomalies_uri)
                    + blank_problems(stats, curated, max_blank_fraction, json.loads(blank_fractions_json)))


@component
def AnomaliesGate(  # noqa: N802 - a component name
        anomalies: InputArtifact[ExampleAnomalies],
        statistics: InputArtifact[ExampleStatistics],
        schema: InputArtifact[Schema],
        min_examples_per_split: Parameter[int],
        max_blank_fraction: Parameter[float],
        blank_fractions_json: Parameter[str],
        text_columns_json: Parameter[str],
        label_key: Parameter[str],
        numeric_columns_json: Parameter[str],
        int_columns_json: Parameter[str]) -> None:
    """Fails the run, naming each split and column, when the data is not fit to train on."""
    found = gate_problems(
        anomalies.uri, statistics.uri, schema.uri, min_examples_per_split=min_examples_per_split,
        max_blank_fraction=max_blank_fraction, blank_fractions_json=blank_fractions_json,
        text_columns_json=text_columns_json, label_key=label_key,
        numeric_columns_json=numeric_columns_json, int_columns_json=int_columns_json)
    if found:
        raise DataValidationError(
            "Data validation failed: the input data does not match schema/schema.pbtxt or the config's "
            "validation section, so the run stops before training and the pushed model is unchanged.\n"
            + format_anomalies(found)
            + "\nFix the data, or, if the change is intended, update the schema "
            "(`tfxt schema refresh`) or the validation section of the config, and review it.")

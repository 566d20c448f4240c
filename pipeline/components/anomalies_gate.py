"""`AnomaliesGate`: stops the run before Transform when ExampleValidator found anomalies.

TFX's ExampleValidator only records anomalies: nothing downstream stops on them.
Transform depends on this gate, so data that breaks the curated schema stops the
run before Transform and Trainer, the Pusher never runs, and the previously
pushed model stays as it is.

`read_anomalies` turns ExampleValidator's output into plain (split, column,
description) rows; the gate and the run summary both use it.
"""

import os
from typing import List, NamedTuple

from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types.standard_artifacts import ExampleAnomalies

SCHEMA_DIFF_FILE = "SchemaDiff.pb"  # the file ExampleValidator writes per split


class Anomaly(NamedTuple):
    split: str
    column: str
    description: str


def read_anomalies(anomalies_uri: str) -> List[Anomaly]:
    """Every anomaly of every split under an ExampleAnomalies artifact URI."""
    from tensorflow_data_validation.utils import anomalies_util

    rows = []
    for entry in sorted(fileio.listdir(anomalies_uri)):
        entry = entry.rstrip("/")  # object stores list folders with a trailing slash
        path = os.path.join(anomalies_uri, entry, SCHEMA_DIFF_FILE)
        if not entry.startswith("Split-") or not fileio.exists(path):
            continue
        split = entry[len("Split-"):]
        proto = anomalies_util.load_anomalies_binary(path)
        for column, info in sorted(proto.anomaly_info.items()):
            rows.append(Anomaly(split, column, _describe(info)))
        if proto.HasField("dataset_anomaly_info"):
            rows.append(Anomaly(split, "<dataset>", _describe(proto.dataset_anomaly_info)))
    return rows


def format_anomalies(anomalies: List[Anomaly]) -> str:
    """One line per anomaly, naming the split and the column."""
    return "\n".join(f"  split '{a.split}', column '{a.column}': {a.description}"
                     for a in anomalies)


def _describe(info) -> str:
    reasons = [r.description or r.short_description for r in info.reason]
    return "; ".join(r for r in reasons if r) or info.description or info.short_description


class DataValidationError(RuntimeError):
    """The input data does not match the curated schema."""


@component
def AnomaliesGate(anomalies: InputArtifact[ExampleAnomalies]) -> None:  # noqa: N802 - a component name
    """Fails the run, naming each column, when ExampleValidator found anomalies."""
    found = read_anomalies(anomalies.uri)
    if found:
        raise DataValidationError(
            "Data validation failed: the input data does not match schema/schema.pbtxt, so the run "
            "stops before training and the pushed model is unchanged.\n"
            + format_anomalies(found)
            + "\nFix the data, or, if the change is intended, update the schema "
            "(`tfxt schema refresh`) and review it.")

"""Reads ExampleValidator's output into plain (split, column, description) rows.

The anomalies gate and the run summary both use it.
"""

import os
from typing import List, NamedTuple

SCHEMA_DIFF_FILE = "SchemaDiff.pb"  # the file ExampleValidator writes per split


class Anomaly(NamedTuple):
    split: str
    column: str
    description: str


def read_anomalies(anomalies_uri: str) -> List[Anomaly]:
    """Every anomaly of every split under an ExampleAnomalies artifact URI."""
    from tensorflow_data_validation.utils import anomalies_util

    rows = []
    for entry in sorted(os.listdir(anomalies_uri)):
        path = os.path.join(anomalies_uri, entry, SCHEMA_DIFF_FILE)
        if not entry.startswith("Split-") or not os.path.exists(path):
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

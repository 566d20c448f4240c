"""The edge preprocessing spec: Transform's analyzer outputs as a small JSON file.

`build_spec(tf_transform_output)` writes down what a device needs to turn a raw
row into the int8 model's input vector without TensorFlow: per numeric feature
the training mean and standard deviation, per categorical feature its
vocabulary in Transform's order (id = position, unseen = the OOV bucket), and
the label names. `apply_spec` (shared with the device script `edge/predict.py`)
applies it. Called by `edge.export` and tested against the Transform graph.

Vocabularies are Transform's vocabulary files. Means and standard deviations
are constants inside the Transform graph, with no API to read them, so they are
recovered by running the graph on probe values (z = (x - mean) / std is affine)
and then checked: the spec must reproduce the graph's output on the probes, or
`build_spec` refuses (a changed `preprocessing_fn` needs a changed spec).
"""

import json
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from edge.predict import SPEC_FORMAT_VERSION, SpecError, apply_spec, check_spec, feature_vector_size
from models import features

__all__ = ["apply_spec", "build_spec", "write_spec", "transform_rows", "SpecError", "feature_vector_size"]

# Largest difference tolerated between the spec and the Transform graph (float32 rounding).
TOLERANCE = 1e-5


def build_spec(tf_transform_output) -> Dict[str, Any]:
    """The preprocessing spec of a `tft.TFTransformOutput`, checked against its graph."""
    raw_spec = tf_transform_output.raw_feature_spec()
    spec: Dict[str, Any] = {
        "format_version": SPEC_FORMAT_VERSION,
        "numeric": [],
        "categorical": [],
        "label_names": [v.decode() for v in tf_transform_output.vocabulary_by_name(
            features.LABEL_VOCABULARY)],
    }
    for key in features.CATEGORICAL_FEATURE_KEYS:
        spec["categorical"].append({
            "name": key,
            "vocabulary": [v.decode() for v in tf_transform_output.vocabulary_by_name(
                features.vocabulary_name(key))],
            "num_oov_buckets": features.NUM_OOV_BUCKETS,
            "missing_value": features.MISSING_CATEGORY,
        })
    spec["numeric"] = _numeric_scaling(tf_transform_output, raw_spec)
    spec["feature_vector_size"] = feature_vector_size(spec)
    check_spec(spec)
    _check_against_graph(spec, tf_transform_output)
    return spec


def write_spec(spec: Mapping[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")


def transform_rows(tf_transform_output, rows: Sequence[Mapping[str, Any]]) -> Dict[str, np.ndarray]:
    """Runs the real Transform graph on raw rows (dicts; None or "" = missing)."""
    import tensorflow as tf

    raw_spec = tf_transform_output.raw_feature_spec()
    serialized = [to_example(row, raw_spec).SerializeToString() for row in rows]
    parsed = tf.io.parse_example(tf.constant(serialized), raw_spec)
    outputs = tf_transform_output.transform_raw_features(parsed, drop_unused_features=True)
    return {key: np.asarray(value).reshape(len(rows), -1) for key, value in outputs.items()}


def encode_transformed(spec: Mapping[str, Any], transformed: Mapping[str, np.ndarray]) -> np.ndarray:
    """The model's encoded vectors from Transform outputs: numerics, then one-hot ids."""
    columns = [transformed[features.transformed_name(f["name"])][:, :1].astype(np.float32)
               for f in spec["numeric"]]
    for feature in spec["categorical"]:
        ids = transformed[features.transformed_name(feature["name"])][:, 0].astype(np.int64)
        size = len(feature["vocabulary"]) + feature["num_oov_buckets"]
        columns.append(np.eye(size, dtype=np.float32)[ids])
    return np.concatenate(columns, axis=1)


def _numeric_scaling(tf_transform_output, raw_spec) -> List[Dict[str, Any]]:
    # Two probes per feature, near the mean and far from it, recover the affine map.
    # A first pair of probes (0 and 1000) gives rough values; the second pair, at
    # the mean and 1000 standard deviations above it, keeps float32 rounding small.
    rough = transform_rows(tf_transform_output, [_probe_row(raw_spec, 0.0), _probe_row(raw_spec, 1000.0)])
    probes_low, probes_high = {}, {}
    for key in features.NUMERIC_FEATURE_KEYS:
        z0, z1 = (float(v) for v in rough[features.transformed_name(key)][:, 0])
        std = 1000.0 / (z1 - z0)
        mean = -z0 * std
        probes_low[key] = _raw_value(raw_spec[key], mean)
        probes_high[key] = _raw_value(raw_spec[key], mean + 1000.0 * std)
    rows = [_probe_row(raw_spec, probes_low), _probe_row(raw_spec, probes_high)]
    out = transform_rows(tf_transform_output, rows)
    result = []
    for key in features.NUMERIC_FEATURE_KEYS:
        z_low, z_high = (float(v) for v in out[features.transformed_name(key)][:, 0])
        std = (probes_high[key] - probes_low[key]) / (z_high - z_low)
        mean = probes_low[key] - z_low * std
        result.append({"name": key, "dtype": "int" if raw_spec[key].dtype.is_integer else "float",
                       "mean": float(np.float32(mean)), "std": float(np.float32(std))})
    return result


def _check_against_graph(spec: Mapping[str, Any], tf_transform_output) -> None:
    rows = []
    rng = np.random.default_rng(0)
    for feature in spec["numeric"]:
        for z in (-3.0, -0.5, 0.0, 0.7, 2.5):
            value = feature["mean"] + (z + rng.uniform(-0.1, 0.1)) * feature["std"]
            rows.append({feature["name"]: round(value) if feature["dtype"] == "int" else value})
    raw_spec = tf_transform_output.raw_feature_spec()
    for feature in spec["categorical"]:
        # A missing value can only be probed where the schema lets the column be absent.
        optional = getattr(raw_spec[feature["name"]], "default_value", 0) is not None
        rows += [{feature["name"]: v}
                 for v in feature["vocabulary"] + ([""] if optional else []) + ["__never_seen__"]]
    # Columns not under test hold their mean, or a known category: a required column cannot be
    # left out, and a blank in it is a value to Transform (out of vocabulary) but missing to the spec.
    base = _probe_row(raw_spec, {f["name"]: f["mean"] for f in spec["numeric"]})
    for feature in spec["categorical"]:
        known = [v for v in feature["vocabulary"] if v != feature["missing_value"]]
        if known:
            base[feature["name"]] = known[0]
    full_rows = [{**base, **row} for row in rows]
    expected = encode_transformed(spec, transform_rows(tf_transform_output, full_rows))
    actual = np.stack([apply_spec(spec, row) for row in full_rows])
    worst = float(np.max(np.abs(expected - actual)))
    if worst > TOLERANCE:
        raise SpecError(f"The preprocessing spec differs from the Transform graph by {worst:.3g}: "
                        "preprocessing_fn no longer matches what edge.spec reproduces "
                        "(mean-imputed z-scores, vocabularies with one OOV bucket).")


def _probe_row(raw_spec, numeric) -> Dict[str, Any]:
    """A raw row: numerics from `numeric` (a value or per-key dict), other columns filled."""
    row: Dict[str, Any] = {}
    for key, feature_spec in raw_spec.items():
        if key in features.NUMERIC_FEATURE_KEYS:
            value = numeric.get(key) if isinstance(numeric, dict) else numeric
            row[key] = None if value is None else _raw_value(feature_spec, value)
        elif feature_spec.dtype.name == "string":
            row[key] = features.LABEL_CLASSES[0] if key == features.LABEL_KEY else ""
        else:
            row[key] = 0
    return row


def _raw_value(feature_spec, value: float):
    return int(round(value)) if feature_spec.dtype.is_integer else float(value)


def to_example(row: Mapping[str, Any], raw_spec):
    """A tf.Example of a raw row as CsvExampleGen writes it: missing optional values left out."""
    import tensorflow as tf

    example = tf.train.Example()
    for key, feature_spec in raw_spec.items():
        value = row.get(key)
        if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
            if key == features.LABEL_KEY or getattr(feature_spec, "default_value", 0) is None:
                # Required columns (FixedLenFeature without default) need a value to parse.
                value = features.LABEL_CLASSES[0] if feature_spec.dtype.name == "string" else 0
            else:
                continue
        target = example.features.feature[key]
        if feature_spec.dtype.name == "string":
            target.bytes_list.value.append(str(value).encode())
        elif feature_spec.dtype.is_integer:
            target.int64_list.value.append(int(round(float(value))))
        else:
            target.float_list.value.append(float(value))
    return example

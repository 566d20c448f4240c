"""Conversions between the shapes a prediction request takes.

Raw rows (dicts of feature -> value, as users and CSV files hold them),
`tf.Example`s (what `serving_default` and the classify API take), raw columns
(what `serving_raw` takes: each feature of its schema type, int64 with
`features.MISSING_INT` for a missing INT value, float32 with NaN for a missing
FLOAT value, "" for a missing categorical) and TF Serving's JSON tensor encoding.
Every path types values by the schema (`typed_row`), never by the form a
number happens to have (a pandas column with blanks is float64).

Used by the clients, the local server, warmup requests and batch predictions,
so that all of them encode a missing value the same way.
"""

import base64
import inspect
import json
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Sequence

import numpy as np

from models import features


def typed_row(row: Mapping[str, Any], index: int = 0) -> Dict[str, Any]:
    """`row` with each model feature's value converted to its schema type; missing values left out.

    INT features (`features.INT_FEATURE_KEYS`) become Python ints (192.0 -> 192;
    192.5 is an error), other numeric features floats (45 -> 45.0), categorical
    features strings. So a pandas row, whose columns with blanks are float64,
    types the same as a hand-written one. None, NaN and "" mean missing.
    Columns the model does not know keep their value (numpy scalars unwrapped).

    Raises:
      ValueError: a value that cannot have its feature's type; the message names it.
    """
    typed: Dict[str, Any] = {}
    for key, value in row.items():
        if _is_missing(value):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if key in features.NUMERIC_FEATURE_KEYS:
            number = _number(key, value, index)
            if key in features.INT_FEATURE_KEYS:
                if not float(number).is_integer():
                    raise ValueError(f"row {index}: {key} must be a whole number (the schema types it "
                                     f"INT), got {value!r}")
                number = int(number)
            typed[key] = number if key in features.INT_FEATURE_KEYS else float(number)
        elif key in features.CATEGORICAL_FEATURE_KEYS:
            if not isinstance(value, str):
                raise ValueError(f"row {index}: {key} must be a string, got {value!r}")
            typed[key] = value
        else:
            typed[key] = value
    return typed


def _number(key: str, value: Any, index: int):
    if isinstance(value, bool):
        raise ValueError(f"row {index}: {key} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"row {index}: {key} must be a number, got {value!r}") from None


def example_from_row(row: Mapping[str, Any], index: int = 0):
    """A `tf.train.Example` from a raw row, each feature typed by the schema (`typed_row`).

    Columns the model does not know are typed as TF Serving types JSON values:
    integers int64, other numbers float, strings bytes. None, NaN and "" mean
    missing, so the feature is left out.
    """
    import tensorflow as tf

    example = tf.train.Example()
    for key, value in typed_row(row, index).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        values = [v for v in values if not _is_missing(v)]
        if not values:
            continue
        feature = example.features.feature[key]
        if all(isinstance(v, (bytes, str)) for v in values):
            feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in values)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            feature.int64_list.value.extend(int(v) for v in values)
        elif all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
            feature.float_list.value.extend(float(v) for v in values)
        else:
            raise ValueError(f"feature {key!r}: {value!r} is not a number, a string or a list of one kind")
    return example


def example_from_json(values: Mapping[str, Any], decode_b64: Callable[[str], bytes]):
    """A `tf.train.Example` from one JSON object of a :classify/:regress request, as TF Serving builds it.

    The JSON form decides the type: a string (or {"b64": ...}) is bytes, an
    integer int64, any other number float; a list holds values of one kind.
    `null` is refused (leave the feature out instead), "" stays an empty string.

    Raises:
      ValueError: a value TF Serving refuses; the message names the feature.
    """
    import tensorflow as tf

    example = tf.train.Example()
    for key, value in values.items():
        items = value if isinstance(value, list) else [value]
        if any(v is None for v in items):
            raise ValueError(f"feature {key!r} is null; leave the feature out for a missing value")
        items = [decode_b64(v["b64"]) if isinstance(v, dict) and set(v) == {"b64"} else v for v in items]
        feature = example.features.feature[key]
        if all(isinstance(v, (str, bytes)) for v in items):
            feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in items)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            feature.int64_list.value.extend(items)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            feature.float_list.value.extend(float(v) for v in items)
        else:
            raise ValueError(f"feature {key!r}: {json.dumps(value)} is not a string, a number or a list "
                             "of one kind")
    return example


def row_from_example(example) -> Dict[str, Any]:
    """The raw row of a `tf.train.Example` (single values unwrapped, missing left out)."""
    row: Dict[str, Any] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind is None:
            continue
        values = list(getattr(feature, kind).value)
        if kind == "bytes_list":
            values = [v.decode("utf-8", "replace") for v in values]
        if values:
            row[key] = values[0] if len(values) == 1 else values
    return row


def raw_dtype(key: str) -> np.dtype:
    """The numpy dtype of feature `key` in the `serving_raw` signature: the schema's type."""
    if key in features.INT_FEATURE_KEYS:
        return np.dtype(np.int64)
    if key in features.NUMERIC_FEATURE_KEYS:
        return np.dtype(np.float32)
    return np.dtype(object)


def missing_value(key: str) -> Any:
    """How `serving_raw` takes a missing value of feature `key`: MISSING_INT, NaN or ""."""
    if key in features.INT_FEATURE_KEYS:
        return features.MISSING_INT
    return math.nan if key in features.NUMERIC_FEATURE_KEYS else ""


def raw_columns(rows: Sequence[Mapping[str, Any]]) -> Dict[str, np.ndarray]:
    """The inputs of the `serving_raw` signature for `rows`, each of its schema type (`raw_dtype`).

    Values are typed as `typed_row` types them (a pandas row's 192.0 becomes 192
    for an INT feature); a missing value becomes `missing_value(key)`.

    Raises:
      ValueError: a row holds a column the model does not know, or a value of
        the wrong kind; the message names it.
    """
    known = set(features.feature_keys()) | {features.LABEL_KEY} | set(features.PASSTHROUGH_KEYS)
    for index, row in enumerate(rows):
        unknown = sorted(set(row) - known)
        if unknown:
            raise ValueError(f"row {index}: unknown feature(s) {unknown}; "
                             f"the model takes {list(features.feature_keys())}")
    typed = [typed_row(row, index) for index, row in enumerate(rows)]
    return {key: np.asarray([row.get(key, missing_value(key)) for row in typed], dtype=raw_dtype(key))
            for key in features.feature_keys()}


def rows_from_raw_columns(columns: Mapping[str, np.ndarray]) -> List[Dict[str, Any]]:
    """`json_rows` of `serving_raw` inputs, a missing INT value (`features.MISSING_INT`) as None.

    A missing FLOAT value stays NaN and a missing categorical "", as in the columns.
    """
    rows = json_rows(columns)
    for row in rows:
        for key in features.INT_FEATURE_KEYS:
            if row.get(key) == features.MISSING_INT:
                row[key] = None
    return rows


def json_rows(columns: Mapping[str, np.ndarray]) -> List[Dict[str, Any]]:
    """Columns to TF Serving's row format (`instances`): one object per row."""
    names = list(columns)
    size = len(next(iter(columns.values()))) if columns else 0
    return [{name: to_json(columns[name][i]) for name in names} for i in range(size)]


def to_json(value: Any, name: str = "") -> Any:
    """A numpy value or array as TF Serving writes it in JSON.

    Strings are UTF-8 text, except outputs whose name ends in `_bytes`, which
    TF Serving writes as {"b64": ...}; NaN stays NaN, as TF Serving writes it.
    """
    if isinstance(value, np.ndarray):
        # Numbers convert in one C call; strings need decoding one by one.
        return value.tolist() if value.dtype.kind in "biuf" else [to_json(v, name) for v in value]
    if isinstance(value, (list, tuple)):
        return [to_json(v, name) for v in value]
    if isinstance(value, bytes):
        if name.endswith("_bytes"):
            return {"b64": base64.b64encode(value).decode()}
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item() if not isinstance(value, np.bytes_) else to_json(bytes(value), name)
    return value


def rows_to_examples(rows: Iterable[Mapping[str, Any]]) -> List[Any]:
    """`example_from_row` for each row, without the label (serving does not take it)."""
    return [example_from_row({k: v for k, v in row.items() if k != features.LABEL_KEY}) for row in rows]


def message_dict(message) -> Dict[str, Any]:
    """A proto message as TF Serving's REST API prints it: proto field names, defaults included."""
    from google.protobuf import json_format

    parameters = inspect.signature(json_format.MessageToDict).parameters
    # protobuf 5.26 renamed including_default_value_fields; protobuf 6 (TFX 1.21) removed the old name.
    defaults = ("always_print_fields_with_no_presence"
                if "always_print_fields_with_no_presence" in parameters else "including_default_value_fields")
    return json_format.MessageToDict(message, preserving_proto_field_name=True, **{defaults: True})


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return True
    return isinstance(value, str) and value == ""

"""Invariants of the one feature vocabulary (`models/features.py`) against the data and schema."""

import csv
import glob
import os

from tensorflow_data_validation.utils import schema_util

from models import features
from tests.conftest import DATA_ROOT, SCHEMA_PATH


def _schema():
    return schema_util.load_schema_text(SCHEMA_PATH)


def test_label_is_not_a_feature_and_names_are_unique():
    keys = features.feature_keys()
    assert features.LABEL_KEY not in keys
    assert len(set(keys)) == len(keys)
    assert not set(keys) & set(features.PASSTHROUGH_KEYS)
    transformed = [features.transformed_name(k) for k in keys + (features.LABEL_KEY,)]
    assert len(set(transformed)) == len(transformed)
    assert not set(transformed) & set(keys)


def test_slice_keys_are_declared_raw_columns():
    assert set(features.SLICE_KEYS) <= set(features.CATEGORICAL_FEATURE_KEYS + features.PASSTHROUGH_KEYS)


def test_every_declared_column_is_in_the_schema_with_the_right_type():
    by_name = {f.name: f for f in _schema().feature}
    assert set(features.INT_FEATURE_KEYS) <= set(features.NUMERIC_FEATURE_KEYS)
    for key in features.NUMERIC_FEATURE_KEYS:
        int_feature = key in features.INT_FEATURE_KEYS
        expected = schema_util.schema_pb2.INT if int_feature else schema_util.schema_pb2.FLOAT
        assert by_name[key].type == expected, key
    for key in features.CATEGORICAL_FEATURE_KEYS + (features.LABEL_KEY,):
        assert by_name[key].type == schema_util.schema_pb2.BYTES, key
    assert set(by_name) == set(features.feature_keys() + (features.LABEL_KEY,) + features.PASSTHROUGH_KEYS)


def test_schema_does_not_require_the_label_when_serving():
    schema = _schema()
    assert set(schema.default_environment) == {"TRAINING", "SERVING"}
    label = next(f for f in schema.feature if f.name == features.LABEL_KEY)
    assert "SERVING" in label.not_in_environment
    others = [f for f in schema.feature if f.name != features.LABEL_KEY]
    assert all("SERVING" not in f.not_in_environment for f in others)


def test_label_classes_match_the_schema_domain_and_the_data():
    schema = _schema()
    label = next(f for f in schema.feature if f.name == features.LABEL_KEY)
    domain = next(d for d in schema.string_domain if d.name == label.domain)
    assert sorted(domain.value) == sorted(features.LABEL_CLASSES)
    seen = set()
    for path in glob.glob(os.path.join(DATA_ROOT, "span-*", "*.csv")):
        with open(path) as f:
            seen |= {row[features.LABEL_KEY] for row in csv.DictReader(f)}
    assert seen == set(features.LABEL_CLASSES)


def test_declared_category_values_are_the_schema_domains():
    """Transform reserves these ids first (models/preprocessing.py); the schema checks the data."""
    schema = _schema()
    assert set(features.CATEGORY_VALUES) <= set(features.CATEGORICAL_FEATURE_KEYS)
    for key, values in features.CATEGORY_VALUES.items():
        feature = next(f for f in schema.feature if f.name == key)
        domain = next(d for d in schema.string_domain if d.name == (feature.domain or key))
        assert list(values) == list(domain.value), key
        assert features.MISSING_CATEGORY not in values


def test_every_csv_has_exactly_the_declared_columns():
    declared = set(features.feature_keys() + (features.LABEL_KEY,) + features.PASSTHROUGH_KEYS)
    paths = sorted(glob.glob(os.path.join(DATA_ROOT, "span-*", "*.csv")))
    assert [os.path.basename(os.path.dirname(p)) for p in paths] == [
        "span-2007", "span-2008", "span-2009"]
    for path in paths:
        with open(path) as f:
            assert set(next(csv.reader(f))) == declared, path

"""`preprocessing_fn` run through tf.Transform's Beam implementation on a few in-memory rows."""

import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from models import features, preprocessing

X = features.transformed_name

# Optional columns are VarLen (as the curated schema makes them); missing = empty list.
RAW_SPEC = {
    **{k: tf.io.VarLenFeature(tf.float32) for k in features.NUMERIC_FEATURE_KEYS},
    **{k: tf.io.VarLenFeature(tf.string) for k in features.CATEGORICAL_FEATURE_KEYS},
    features.LABEL_KEY: tf.io.FixedLenFeature([], tf.string),
}


def _row(bill_length, island, sex, species, body_mass=4000.0):
    return {
        "bill_length_mm": [] if bill_length is None else [bill_length],
        "bill_depth_mm": [18.0],
        "flipper_length_mm": [200.0],
        "body_mass_g": [body_mass],
        "island": [] if island is None else [island],
        "sex": [] if sex is None else [sex],
        features.LABEL_KEY: species,
    }


TRAIN_ROWS = [
    _row(40.0, "Biscoe", "male", "Adelie"),
    _row(50.0, "Biscoe", "female", "Gentoo"),
    _row(None, "Dream", None, "Gentoo"),
    _row(45.0, "Biscoe", "female", "Gentoo", body_mass=5000.0),
]


@pytest.fixture(scope="module")
def transformed():
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    new_rows = [_row(60.0, "Atlantis", "male", "Adelie"), _row(None, None, None, "Adelie")]
    with tempfile.TemporaryDirectory() as tmp, tft_beam.Context(temp_dir=tmp):
        (train_out, _), transform_fn = (
            (TRAIN_ROWS, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn))
        new_out, _ = ((new_rows, metadata), transform_fn) | tft_beam.TransformDataset()
        return train_out, new_out


def _column(rows, key):
    return np.array([np.asarray(r[X(key)]).reshape(-1)[0] for r in rows])


def test_numerics_are_z_scored_over_present_values_and_missing_imputed_to_zero(transformed):
    train, new = transformed
    present = np.array([40.0, 50.0, 45.0])
    expected = (present - present.mean()) / present.std()
    values = _column(train, "bill_length_mm")
    np.testing.assert_allclose(values[[0, 1, 3]], expected, rtol=1e-5)
    assert values[2] == 0.0
    np.testing.assert_allclose(_column(new, "bill_length_mm")[0], (60.0 - 45.0) / present.std(), rtol=1e-5)
    # A constant column has zero variance: it maps to 0 instead of dividing by zero.
    np.testing.assert_allclose(_column(train, "bill_depth_mm"), 0.0)


def test_categoricals_get_declared_ids_first_then_missing_and_oov(transformed):
    train, new = transformed
    # island: Biscoe, Dream, Torgersen, __missing__ (features.CATEGORY_VALUES, then the missing token).
    assert list(_column(train, "island")) == [0, 0, 1, 0]
    # sex: female 0, male 1, __missing__ 2.
    assert list(_column(train, "sex")) == [1, 0, 2, 0]
    island_vocab_size = len(features.CATEGORY_VALUES["island"]) + 1
    # An unseen island goes to the one OOV bucket; a missing one to the "__missing__" id.
    assert _column(new, "island")[0] == island_vocab_size
    assert _column(new, "sex")[1] == 2


def test_categorical_ids_do_not_follow_frequency():
    """Male and Dream in the majority: with frequency order they took id 0, and a model trained on
    one window could not warm-start the next one's (pipeline/training/warm_start.py)."""
    rows = [_row(40.0, "Dream", "male", "Adelie"), _row(41.0, "Dream", "male", "Adelie"),
            _row(42.0, "Biscoe", "female", "Gentoo")]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    with tempfile.TemporaryDirectory() as tmp, tft_beam.Context(temp_dir=tmp):
        (out, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn)
    assert list(_column(out, "island")) == [1, 1, 0]
    assert list(_column(out, "sex")) == [1, 1, 0]


def test_label_ids_follow_label_classes_not_frequency(transformed):
    train, _ = transformed
    # Gentoo is the majority here; ids still follow LABEL_CLASSES' order.
    ids = {name: i for i, name in enumerate(features.LABEL_CLASSES)}
    expected = [ids[row[features.LABEL_KEY]] for row in TRAIN_ROWS]
    assert list(_column(train, features.LABEL_KEY)) == expected
    assert expected != [1, 0, 0, 0]  # frequency order: Gentoo 0, Adelie 1


def test_every_output_is_a_dense_column(transformed):
    train, _ = transformed
    expected = {X(k) for k in features.feature_keys() + (features.LABEL_KEY,)}
    assert set(train[0]) == expected
    assert all(np.asarray(v).shape in ((), (1,)) for v in train[0].values())


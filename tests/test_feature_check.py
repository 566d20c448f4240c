"""`check_features`: the mistakes an adopter makes in models/features.py stop the run in one line."""

import types

import pytest

from models import features
from pipeline.config import ConfigError
from pipeline.training.feature_check import check_features


def _features(**changes):
    names = {name: getattr(features, name) for name in dir(features) if name.isupper()}
    names.update(changes)
    return types.SimpleNamespace(**names)


def test_the_templates_own_features_pass():
    check_features()
    check_features(_features())


@pytest.mark.parametrize("changes, expected", [
    ({"CATEGORICAL_FEATURE_KEYS": "island"},
     "CATEGORICAL_FEATURE_KEYS is the string 'island', not a tuple: a one-element tuple needs a "
     "trailing comma, ('island',)"),
    ({"NUMERIC_FEATURE_KEYS": features.NUMERIC_FEATURE_KEYS + ("species",)},
     "the label 'species' (LABEL_KEY) is also in NUMERIC_FEATURE_KEYS"),
    ({"PASSTHROUGH_KEYS": ("year", "sex")},
     "column 'sex' is in both CATEGORICAL_FEATURE_KEYS and PASSTHROUGH_KEYS"),
    ({"CATEGORY_VALUES": {"colour": ("red",)}},
     "CATEGORY_VALUES (each categorical column's known values) names 'colour'"),
    ({"CATEGORY_VALUES": {"sex": "female"}}, "CATEGORY_VALUES['sex'] is the string 'female'"),
    ({"SLICE_KEYS": ("bill_length_mm",)}, "SLICE_KEYS (the columns the evaluation is sliced by) names "
                                          "'bill_length_mm'"),
    ({"LABEL_CLASSES": ("Adelie",)}, "LABEL_CLASSES is ('Adelie',)"),
    ({"LABEL_CLASSES": ("0", "1", "0")}, "LABEL_CLASSES is ('0', '1', '0')"),
    ({"NUMERIC_FEATURE_KEYS": (0, 1)}, "NUMERIC_FEATURE_KEYS must be a tuple of strings"),
    ({"CATEGORICAL_FEATURE_KEYS": ("island", "sex", "home town")},
     "column 'home town' cannot name a model input"),
], ids=["string-not-tuple", "label-as-input", "listed-twice", "values-of-unknown",
        "values-string", "slice-numeric", "one-class", "repeated-class", "not-strings", "not-identifier"])
def test_a_mistake_is_one_line_naming_what_to_fix(changes, expected):
    with pytest.raises(ConfigError) as raised:
        check_features(_features(**changes))
    message = str(raised.value)
    assert message.startswith("models/features.py") and "\n" not in message
    assert expected in message


def test_int_feature_keys_are_left_to_the_data_gate():
    """The README's adaptation sets INT_FEATURE_KEYS after the first run (schema refresh prints it)."""
    check_features(_features(INT_FEATURE_KEYS=("flipper_length_mm", "not_a_numeric_column")))


def test_a_missing_name_says_where_to_copy_it_from():
    module = _features()
    del module.CATEGORY_VALUES
    with pytest.raises(ConfigError, match="defines no CATEGORY_VALUES; copy its definition"):
        check_features(module)


def test_the_local_runner_stops_before_tensorflow_work(monkeypatch, capsys):
    """`make run` checks the features file right after the config: exit 2, one line, no pipeline."""
    from runners import local_runner, startup

    def heavy_imports_started():
        raise AssertionError("the features file was checked only after the heavy imports began")

    monkeypatch.setattr(startup, "defer_library_inits", heavy_imports_started)
    monkeypatch.setattr(features, "SLICE_KEYS", "island")
    assert local_runner.main(["--force"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("Config error: models/features.py: SLICE_KEYS is the string 'island', not a "
                           "tuple: a one-element tuple needs a trailing comma, ('island',).")

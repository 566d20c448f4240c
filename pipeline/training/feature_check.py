"""Checks `models/features.py`, the file an adopter edits first, before anything heavy is imported.

The runners (`runners/local_runner.py`, `tfxt run`) call `check_features` right after the config
loads, and `create_pipeline` calls it again for the other runners. A mistake there otherwise
surfaced minutes later, deep inside Transform or the export: `("island")` is a string, not a
one-element tuple, so the template iterated over its letters; a column listed as both numeric and
categorical, or a CATEGORY_VALUES entry for a column that is not categorical, were silently
misread. Each problem raises `ConfigError` with one line naming the name to fix.
"""

import re
from types import ModuleType
from typing import Iterable, Optional

from pipeline.config import ConfigError

WHERE = "models/features.py"
# The names a features file must define, and what each holds.
COLUMN_TUPLES = ("NUMERIC_FEATURE_KEYS", "INT_FEATURE_KEYS", "CATEGORICAL_FEATURE_KEYS", "SLICE_KEYS",
                 "PASSTHROUGH_KEYS", "LABEL_CLASSES")


def check_features(module: Optional[ModuleType] = None) -> None:
    """Raises ConfigError for the first inconsistency in the feature vocabulary (module docstring)."""
    if module is None:
        from models import features as module
    _check_shapes(module)
    label = module.LABEL_KEY
    numeric, categorical = tuple(module.NUMERIC_FEATURE_KEYS), tuple(module.CATEGORICAL_FEATURE_KEYS)
    passthrough = tuple(module.PASSTHROUGH_KEYS)
    lists = {"NUMERIC_FEATURE_KEYS": numeric, "CATEGORICAL_FEATURE_KEYS": categorical,
             "PASSTHROUGH_KEYS": passthrough}
    for name, keys in lists.items():
        if label in keys:
            raise ConfigError(f"{WHERE}: the label {label!r} (LABEL_KEY) is also in {name}; a model "
                              f"must not take its own label as input. Remove it from {name}.")
    seen = {}
    for name, keys in lists.items():
        for key in keys:
            if key in seen:
                raise ConfigError(f"{WHERE}: column {key!r} is in both {seen[key]} and {name}; "
                                  "list each column once.")
            seen[key] = name
    # INT_FEATURE_KEYS is not checked here: the README's adaptation steps set it only after the
    # first run, from what `tfxt schema refresh` prints, and the data gate names any mismatch.
    _check_subset("CATEGORY_VALUES", module.CATEGORY_VALUES, "CATEGORICAL_FEATURE_KEYS", categorical,
                  "each categorical column's known values")
    _check_subset("SLICE_KEYS", module.SLICE_KEYS, "CATEGORICAL_FEATURE_KEYS or PASSTHROUGH_KEYS",
                  categorical + passthrough, "the columns the evaluation is sliced by")
    for key, values in module.CATEGORY_VALUES.items():
        _check_text_tuple(f"CATEGORY_VALUES[{key!r}]", values)
    classes = tuple(module.LABEL_CLASSES)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"{WHERE}: LABEL_CLASSES is {classes!r}; list the label's classes as they are "
                          "written in the CSV, each once, at least two (e.g. (\"0\", \"1\")).")
    check_feature_names(numeric + categorical)


def check_feature_names(keys: Iterable[str]) -> None:
    """Raises ConfigError for a model input whose name the serving signatures would change.

    A SavedModel signature names each input by a Python identifier: TensorFlow turns
    "Sepal.Length" into "Sepal_Length" and "Color Code" fails the export, so a JSON client could
    not send the column by its CSV name. This says so before any component runs.
    """
    for key in keys:
        if not key.isidentifier():
            suggestion = re.sub(r"\W", "_", key)
            suggestion = suggestion if suggestion.isidentifier() else f"x_{suggestion}"
            raise ConfigError(
                f"{WHERE}: column {key!r} cannot name a model input: TensorFlow's serving "
                "signatures name inputs by Python identifiers (letters, digits and _, not starting with "
                f"a digit). Rename it in the CSV header and in {WHERE}, e.g. to {suggestion!r}.")


def _check_shapes(module: ModuleType) -> None:
    for name in ("LABEL_KEY", "CATEGORY_VALUES") + COLUMN_TUPLES:
        if not hasattr(module, name):
            raise ConfigError(f"{WHERE} defines no {name}; copy its definition and comment from the "
                              "template's own models/features.py and set it for your data.")
    if not isinstance(module.LABEL_KEY, str) or not module.LABEL_KEY:
        raise ConfigError(f"{WHERE}: LABEL_KEY must be the label column's name, a string.")
    for name in COLUMN_TUPLES:
        _check_text_tuple(name, getattr(module, name))
    if not isinstance(module.CATEGORY_VALUES, dict):
        raise ConfigError(f"{WHERE}: CATEGORY_VALUES must be a dict from column name to a tuple of "
                          "values, e.g. {\"colour\": (\"red\", \"blue\")} (or {} for none).")


def _check_text_tuple(name: str, value) -> None:
    if isinstance(value, str):
        raise ConfigError(f"{WHERE}: {name} is the string {value!r}, not a tuple: a one-element tuple "
                          f"needs a trailing comma, ({value!r},).")
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{WHERE}: {name} must be a tuple of strings (column names or values as "
                          f"written in the CSV), not {value!r}.")


def _check_subset(name: str, keys: Iterable[str], parent_name: str, parent: Iterable[str],
                  meaning: str) -> None:
    stray = [key for key in keys if key not in set(parent)]
    if stray:
        raise ConfigError(f"{WHERE}: {name} ({meaning}) names {stray[0]!r}, which is not in "
                          f"{parent_name}. Add it there or remove it from {name}.")

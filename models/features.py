"""The one feature vocabulary of the template.

Preprocessing (`models.preprocessing`), the model (`models.model`), evaluation
slices (`pipeline.pipeline`), serving signatures (`pipeline.training.signatures`) and the
edge preprocessing spec all derive from the names declared here. To adapt the
template to another tabular CSV, edit this file (and the config), then refresh
`schema/schema.pbtxt` with `tfxt schema refresh`.
"""

from typing import Dict, Tuple

# The column to predict. A string class name in the raw CSV; Transform maps it
# to an integer id with a vocabulary.
LABEL_KEY: str = "species"

# Numeric columns: imputed with their mean, then z-scored by Transform.
NUMERIC_FEATURE_KEYS: Tuple[str, ...] = (
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
)

# The numeric columns the schema types INT (int64 in a tf.Example and in the serving_raw
# signature); the others are FLOAT (float32). TF Serving types a JSON number by its form
# (192 -> int64, 192.0 -> float) and refuses the other one, so clients convert by this.
INT_FEATURE_KEYS: Tuple[str, ...] = (
    "flipper_length_mm",
    "body_mass_g",
)

# Categorical string columns: missing values become MISSING_CATEGORY, then a
# vocabulary maps them to ids (unseen values go to one out-of-vocabulary bucket).
CATEGORICAL_FEATURE_KEYS: Tuple[str, ...] = (
    "island",
    "sex",
)

# The known values of each categorical column, as in the schema's string domain. Transform gives
# them the first ids, in this order (then `MISSING_CATEGORY`, then any new value by frequency), so
# an id means the same value from one training window to the next: with frequency order alone,
# "male" and "female" swapped ids whenever their counts did, and continuous training
# (pipeline/training/warm_start.py) had to start cold.
CATEGORY_VALUES: Dict[str, Tuple[str, ...]] = {
    "island": ("Biscoe", "Dream", "Torgersen"),
    "sex": ("female", "male"),
}

# Columns the model evaluation is sliced by (each alone), besides overall.
SLICE_KEYS: Tuple[str, ...] = ("island", "sex")

# Columns present in the CSV that are not model inputs (the span key here).
PASSTHROUGH_KEYS: Tuple[str, ...] = ("year",)

# The imputed value of a missing categorical, kept in the vocabulary so that
# "missing" is a category the model can learn from.
MISSING_CATEGORY: str = "__missing__"

# A missing INT value in the serving_raw signature, which has no NaN for int64: int64's
# smallest value, never a measurement. (FLOAT features send NaN, categorical ones "".)
# The tf.Example signatures need no marker: a missing value is a missing feature.
MISSING_INT: int = -(2**63)

# Out-of-vocabulary buckets for categoricals.
NUM_OOV_BUCKETS: int = 1

# Vocabulary file names written by Transform (read by the model, signatures and
# the edge spec).
LABEL_VOCABULARY: str = "label_vocabulary"


def feature_keys() -> Tuple[str, ...]:
    """All raw model input columns, numeric first, in a stable order."""
    return NUMERIC_FEATURE_KEYS + CATEGORICAL_FEATURE_KEYS


def transformed_name(key: str) -> str:
    """The name Transform gives to the transformed version of raw column `key`."""
    return f"{key}_xf"


def vocabulary_name(key: str) -> str:
    """The vocabulary file name Transform writes for categorical column `key`."""
    return f"{key}_vocabulary"


# The label's classes, as they are written in the CSV. Class id i is LABEL_CLASSES[i]
# (Transform's label vocabulary keeps this order), for training, per-class evaluation
# metrics and serving alike. A numeric label is written as text here: ("0", "1").
LABEL_CLASSES: Tuple[str, ...] = ("Adelie", "Chinstrap", "Gentoo")

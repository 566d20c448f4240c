"""The feature vocabulary of the taxi data, for `python -m bench anchor`.

`bench.anchor` copies the template into a temporary project and sets these values in its
`models/features.py` (`anchor.features_source`: the template's file, then this one, whose
assignments win), as the README's "Adapting it to your data" tells a user to edit them. It names
the features of TFX's taxi template (`tfx template copy --model=taxi`): `trip_miles` and
`pickup_latitude` (numeric), `trip_start_hour` (categorical), and its label, a big tipper
(tips > 20% of the fare), which the bench writes into the CSV as `big_tipper` in place of
`tips`. Every other column of the taxi CSV is read, checked and passed through, as the
taxi template reads it too. `tests/test_bench_anchor.py` checks that every name set here is one
`models/features.py` defines.
"""

from typing import Dict, Tuple

LABEL_KEY: str = "big_tipper"

NUMERIC_FEATURE_KEYS: Tuple[str, ...] = (
    "trip_miles",
    "pickup_latitude",
)

INT_FEATURE_KEYS: Tuple[str, ...] = ()

# An hour of day is a number in the CSV, so the schema types it BYTES (README, step 5).
CATEGORICAL_FEATURE_KEYS: Tuple[str, ...] = ("trip_start_hour",)

# No declared values: the hours' ids follow their frequency (one training run per bench).
CATEGORY_VALUES: Dict[str, Tuple[str, ...]] = {}

# The taxi template evaluates the Overall slice only; so does the bench.
SLICE_KEYS: Tuple[str, ...] = ()

PASSTHROUGH_KEYS: Tuple[str, ...] = (
    "pickup_community_area",
    "fare",
    "trip_start_month",
    "trip_start_day",
    "trip_start_timestamp",
    "pickup_longitude",
    "dropoff_latitude",
    "dropoff_longitude",
    "pickup_census_tract",
    "dropoff_census_tract",
    "payment_type",
    "company",
    "trip_seconds",
    "dropoff_community_area",
)

# 1 = a big tipper; written as text, as the label is text in the CSV's schema.
LABEL_CLASSES: Tuple[str, ...] = ("0", "1")

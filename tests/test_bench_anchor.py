"""`python -m bench anchor` keeps working: its taxi CSV, features file, schema and config.

The bench takes minutes and is not run here. These checks are cheap: the label derivation on a
few rows, the prepared CSV against the wheel's taxi CSV, and the bench's features file, schema
and config against what the template reads (`models/features.py`, `load_config`).
"""

import ast
import csv
import importlib.util
import os

import pytest
import yaml
from tensorflow_data_validation.utils import schema_util
from tensorflow_metadata.proto.v0 import schema_pb2

from bench import anchor
from pipeline.config import load_config
from tests.conftest import REPO_ROOT
from tests.test_layers import PACKAGES


def _load_taxi_features(tmp_path):
    """The `models/features.py` the bench writes into its copy of the template."""
    path = tmp_path / "features.py"
    path.write_text(anchor.features_source())
    spec = importlib.util.spec_from_file_location("taxi_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _top_level_names(path):
    with open(path) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("fare, tips, expected", [
    ("10.0", "2.5", "1"),   # 25% of the fare
    ("10.0", "1.5", "0"),   # 15%
    ("10", "2", "0"),       # exactly 20%, in float32 as the taxi template computes it
    ("", "1.0", "1"),       # a blank fare is 0, as the taxi template fills it
    ("12.45", "", "0"),     # a blank tip is 0
    ("0", "0", "0"),
])
def test_big_tipper_is_the_taxi_templates_label(fare, tips, expected):
    assert anchor.big_tipper(fare, tips) == expected


def test_prepared_csv_drops_tips_adds_the_label_and_keeps_row_order(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("fare,trip_miles,tips,company\n10.0,1.5,2.5,a\n20,3,0,\n,0.2,1,c\n")
    rows = anchor.prepare_csv(str(source), str(tmp_path / "out" / "span-1" / "taxi.csv"))
    with open(tmp_path / "out" / "span-1" / "taxi.csv", newline="") as f:
        written = list(csv.reader(f))
    assert rows == 3
    assert written == [["fare", "trip_miles", "company", "big_tipper"],
                       ["10.0", "1.5", "a", "1"], ["20", "3", "", "0"], ["", "0.2", "c", "1"]]


def test_bench_features_set_only_names_the_templates_features_define(tmp_path):
    template = _top_level_names(os.path.join(REPO_ROOT, "models", "features.py"))
    taxi = _top_level_names(os.path.join(anchor.TAXI_DIR, "features.py"))
    # A misspelt name would set nothing, and the template's penguin value would stay.
    assert taxi - template == set(), "bench/taxi/features.py sets names models/features.py lacks"
    features = _load_taxi_features(tmp_path)
    assert features.LABEL_KEY == "big_tipper" and features.feature_keys() == (
        "trip_miles", "pickup_latitude", "trip_start_hour")


def test_features_schema_and_the_taxi_csv_name_the_same_columns(tmp_path):
    features = _load_taxi_features(tmp_path)
    with open(anchor.taxi_csv(), newline="") as f:
        header = next(csv.reader(f))
    declared = set(features.feature_keys()) | set(features.PASSTHROUGH_KEYS)
    assert declared | {"tips"} == set(header)
    assert features.LABEL_KEY == anchor.LABEL and features.LABEL_KEY not in declared
    schema = schema_util.load_schema_text(os.path.join(anchor.TAXI_DIR, "schema.pbtxt"))
    by_name = {feature.name: feature for feature in schema.feature}
    assert set(by_name) == declared | {features.LABEL_KEY}
    # Categorical columns and the label are text (README, adapting step 5; preprocessing's label).
    for key in features.CATEGORICAL_FEATURE_KEYS + (features.LABEL_KEY,):
        assert by_name[key].type == schema_pb2.BYTES, key
    assert list(by_name[features.LABEL_KEY].not_in_environment) == ["SERVING"]


def test_the_bench_copies_every_package_the_template_installs():
    assert set(anchor.PACKAGES) == set(PACKAGES)


def test_bench_config_loads_on_the_prepared_taxi_csv(tmp_path):
    data_root = tmp_path / "data"
    rows = anchor.prepare_csv(anchor.taxi_csv(), str(data_root / "span-1" / "taxi.csv"))
    assert rows == 15002
    with open(data_root / "span-1" / "taxi.csv", newline="") as f:
        labels = [row[anchor.LABEL] for row in csv.DictReader(f)]
    assert set(labels) == {"0", "1"} and 0.15 < labels.count("1") / rows < 0.35
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(anchor.load_bench_config(
        str(tmp_path), str(data_root), os.path.join(anchor.TAXI_DIR, "schema.pbtxt"))))
    config = load_config(str(config_path))
    assert config.pipeline_name == "taxi" and config.enable_cache is False and config.edge.enabled
    assert (config.hyperparameters.train_steps, config.hyperparameters.eval_steps) == (1000, 150)

"""Adapting the template to another CSV, exactly as the README tells a user to.

The test makes a small fruit data set whose columns share no name with the penguins, copies
the template's code into a temporary project, edits only `models/features.py` and the config,
runs the pipeline (which stops at validation against the old schema), refreshes the schema
with `tfxt schema refresh`, and runs again to a pushed model. Commands run with `python -m`
from the copied project, so its edited `models` package is the one imported.
"""

import csv
import os
import random
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from tensorflow_data_validation.utils import schema_util
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline.config import load_config
from pipeline.ops.summary import summarize
from tests.conftest import REPO_ROOT, RUN_TIMEOUT_SECONDS
from tests.test_layers import PACKAGES

pytestmark = pytest.mark.e2e

FRUIT_FEATURES = {
    "LABEL_KEY": '"fruit"',
    "NUMERIC_FEATURE_KEYS": '("weight_g", "diameter_cm", "sweetness")',
    "CATEGORICAL_FEATURE_KEYS": '("color", "origin", "grade")',
    "SLICE_KEYS": '("color",)',
    "PASSTHROUGH_KEYS": '("harvest",)',
    "LABEL_CLASSES": '("apple", "orange", "pear")',
    "CATEGORY_VALUES": '{"color": ("green", "orange", "red", "yellow"), "origin": ("north", "south")}',
}
PROFILES = {  # fruit -> (weight, diameter, sweetness) means, colours
    "apple": ((180, 8.0, 12.0), ("red", "green")),
    "orange": ((140, 7.5, 9.0), ("orange",)),
    "pear": ((220, 6.5, 10.0), ("green", "yellow")),
}


def write_fruit_csv(path, rows_per_class=80, seed=0):
    rng = random.Random(seed)
    rows = []
    for fruit, ((weight, diameter, sweetness), colours) in PROFILES.items():
        for _ in range(rows_per_class):
            rows.append({
                "weight_g": "" if rng.random() < 0.03 else f"{rng.gauss(weight, 10):.1f}",
                "diameter_cm": f"{rng.gauss(diameter, 0.2):.2f}",
                "sweetness": f"{rng.gauss(sweetness, 0.5):.2f}",
                "color": rng.choice(colours),
                "origin": "" if rng.random() < 0.05 else rng.choice(["north", "south"]),
                # A categorical coded as numbers: SchemaGen infers INT, the refresh makes it text.
                "grade": rng.choice(["1", "2", "3"]),
                "harvest": "2026",
                "fruit": fruit,
            })
    rng.shuffle(rows)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def edit_features(path, values):
    """Rewrites the named assignments of a features.py, leaving everything else as it is."""
    with open(path) as f:
        text = f.read()
    for name, value in values.items():
        pattern = re.compile(rf"^{name}(:[^=\n]*)?= .*?(?=\n\n|\n#|\Z)", re.M | re.S)
        assert pattern.search(text), name
        text = pattern.sub(lambda m, n=name, v=value: f"{n}{m.group(1) or ' '}= {v}", text, count=1)
    with open(path, "w") as f:
        f.write(text)


def _python_m(project, module, *args, config_path):
    env = {**os.environ, "TFXT_CONFIG": config_path}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=project, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_SECONDS)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    root = tmp_path_factory.mktemp("adaptation")
    project = root / "project"
    # Every package the template installs, so that nothing of the adapted project runs from this checkout.
    for package in sorted({p.split(".")[0] for p in PACKAGES} | {"schema"}):
        shutil.copytree(os.path.join(REPO_ROOT, package), project / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    edit_features(project / "models" / "features.py", FRUIT_FEATURES)
    write_fruit_csv(root / "data" / "span-1" / "fruit.csv")
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump({
        "pipeline_name": "fruit", "output_dir": str(root / "outputs"), "data_root": str(root / "data"),
        "schema_path": str(project / "schema" / "schema.pbtxt"),
        "hyperparameters": {"train_steps": 150}}))
    first = _python_m(project, "runners.local_runner", config_path=str(config_path))
    refresh = _python_m(project, "runners.cli.main", "schema", "refresh", config_path=str(config_path))
    second = _python_m(project, "runners.local_runner", config_path=str(config_path))
    return project, str(config_path), first, refresh, second


def test_old_schema_stops_the_new_data_at_validation(adapted):
    _, _, first, _, _ = adapted
    assert first.returncode == 4, first.stdout[-3000:]  # data stopped (README, Exit codes)
    assert "Run FAILED" in first.stdout and "column 'weight_g'" in first.stdout


def test_schema_refresh_rewrites_the_schema_for_the_new_columns(adapted):
    project, _, _, refresh, _ = adapted
    assert refresh.returncode == 0, refresh.stdout[-3000:]
    assert "added          weight_g" in refresh.stdout and "removed        species" in refresh.stdout
    schema = schema_util.load_schema_text(str(project / "schema" / "schema.pbtxt"))
    names = {f.name for f in schema.feature}
    assert names == {"weight_g", "diameter_cm", "sweetness", "color", "origin", "grade", "harvest", "fruit"}
    assert "typed BYTES    grade (SchemaGen inferred INT; categorical columns are text)" in refresh.stdout
    grade = next(f for f in schema.feature if f.name == "grade")
    assert grade.type == schema_pb2.BYTES and not grade.HasField("int_domain")
    label = next(f for f in schema.feature if f.name == "fruit")
    assert list(label.not_in_environment) == ["SERVING"]


def test_adapted_pipeline_trains_evaluates_and_pushes(adapted):
    _, config_path, _, _, second = adapted
    assert second.returncode == 0, second.stdout[-5000:]
    summary = summarize(load_config(config_path))
    assert summary.blessed is True and summary.pushed_version
    assert sorted(summary.class_names) == ["apple", "orange", "pear"]
    assert {"color:red", "color:green", "color:orange", "color:yellow"} <= set(summary.metrics)
    assert os.path.isfile(os.path.join(summary.pushed_path, "saved_model.pb"))

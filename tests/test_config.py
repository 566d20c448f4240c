"""The typed config: defaults, files, overrides and the clear errors a user gets."""

import dataclasses
import os

import pytest

from pipeline.config import ConfigError, PipelineConfig, load_config, span_pattern
from tests.conftest import DATA_ROOT, REPO_ROOT, SCHEMA_PATH


def _load(tmp_path, **overrides):
    return load_config(overrides={"data_root": DATA_ROOT, "schema_path": SCHEMA_PATH, **overrides},
                       base_dir=str(tmp_path))


def test_defaults_resolve_paths_and_fingerprint_the_schema(tmp_path):
    config = load_config(base_dir=REPO_ROOT)
    assert config.data_root == DATA_ROOT
    assert config.output_dir == os.path.join(REPO_ROOT, "outputs")
    assert config.pipeline_root.startswith(config.output_dir)
    assert len(config.schema_fingerprint) == 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.strategy = "mirrored"


def test_file_values_and_overrides_nest_and_coerce(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("hyperparameters:\n  train_steps: 7\n  hidden_units: [4]\nspans: [2008, 2009]\n")
    config = load_config(str(path), {"hyperparameters": {"learning_rate": "0.5"},
                                     "data_root": DATA_ROOT, "schema_path": SCHEMA_PATH},
                         base_dir=str(tmp_path))
    assert config.hyperparameters.train_steps == 7
    assert config.hyperparameters.hidden_units == (4,)
    assert config.hyperparameters.learning_rate == 0.5
    assert config.hyperparameters.batch_size == PipelineConfig().hyperparameters.batch_size
    assert config.spans == (2008, 2009)


def test_fingerprint_changes_with_any_value(tmp_path):
    a, b = _load(tmp_path), _load(tmp_path, seed=7)
    assert a.fingerprint() == _load(tmp_path).fingerprint()
    assert a.fingerprint() != b.fingerprint()
    assert load_config(overrides=a.to_dict()) == a


@pytest.mark.parametrize("overrides, message", [
    ({"strategy": "tpu_pod"}, "Unknown strategy 'tpu_pod'"),
    ({"trainig_steps": 3}, "Unknown field(s) in config: trainig_steps"),
    ({"hyperparameters": {"train_steps": "many"}}, "hyperparameters.train_steps must be a number"),
    ({"hyperparameters": {"train_steps": 0}}, "hyperparameters.train_steps must be at least 1"),
    ({"hyperparameters": {"steps_per_execution": 0}},
     "hyperparameters.steps_per_execution must be at least 1, got 0"),
    ({"hyperparameters": {"learning_rate": -1}}, "learning_rate must be a positive number"),
    ({"hyperparameters": {"learning_rate": float("nan")}},
     "learning_rate must be a positive number, got nan"),
    ({"hyperparameters": {"learning_rate": "inf"}}, "learning_rate must be a positive number, got inf"),
    ({"hyperparameters": {"dropout": 1.0}}, "hyperparameters.dropout must lie in [0, 1)"),
    ({"seed": -1}, "seed must be 0 or more, got -1"),
    ({"thresholds": {"max_accuracy_drop": 1.5}}, "thresholds.max_accuracy_drop must lie in [0, 1]"),
    ({"thresholds": {"max_accuracy_drop": -0.1}}, "thresholds.max_accuracy_drop must lie in [0, 1]"),
    ({"output_dir": ""}, "output_dir is empty"),
    ({"thresholds": {"min_accuracy": 2}}, "min_accuracy must lie in [0, 1]"),
    ({"enable_cache": "perhaps"}, "enable_cache must be true or false"),
    ({"spans": [2010]}, "spans [2010] are not in"),
    ({"pipeline_name": "my pipeline"}, "pipeline_name 'my pipeline'"),
])
def test_bad_values_name_the_field(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, **overrides)
    assert message in str(error.value)


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="Config file .* does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="holds no span-<N>/ folders"):
        _load(tmp_path, data_root=str(tmp_path))
    with pytest.raises(ConfigError, match="schema refresh"):
        _load(tmp_path, schema_path=str(tmp_path / "schema.pbtxt"))
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(str(tmp_path / "bad.yaml"))


def test_spans_one_pattern_cannot_select_are_refused(tmp_path):
    for span in (17, 18, 27, 28):
        (tmp_path / f"span-{span}").mkdir()
        (tmp_path / f"span-{span}" / "data.csv").write_text("a\n1\n")
    with pytest.raises(ConfigError, match=r"one file pattern without also taking \[18, 27\]"):
        _load(tmp_path, data_root=str(tmp_path), spans=[17, 28])
    assert _load(tmp_path, data_root=str(tmp_path), spans=[17, 18]).spans == (17, 18)


def test_a_span_folder_without_csv_is_refused(tmp_path):
    for span in (1, 2):
        (tmp_path / f"span-{span}").mkdir()
    (tmp_path / "span-1" / "data.csv").write_text("a\n1\n")
    (tmp_path / "span-2" / "notes.txt").write_text("the export failed\n")
    with pytest.raises(ConfigError, match=r"span-2 holds no \.csv file"):
        _load(tmp_path, data_root=str(tmp_path))
    assert _load(tmp_path, data_root=str(tmp_path), spans=[1]).spans == (1,)


def test_span_pattern_selects_exactly_the_requested_spans():
    assert span_pattern(()) == "span-*/*.csv"
    assert span_pattern((2008, 2009)) == "span-200[89]/*.csv"
    assert span_pattern((2007,)) == "span-2007/*.csv"


# Runs an entry point as `python <file>` or `python -m <module>` would, then reports on stderr
# whether TensorFlow or TFX had been imported by the time it ended.
ENTRY_POINT_PROBE = """
import runpy, sys
target, sys.argv = sys.argv[1], sys.argv[1:]
code = 0
try:
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    code = 99
print("HEAVY=" + ",".join(m for m in ("tensorflow", "tfx") if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("entry_point, expected_code", [
    (["runners/local_runner.py"], 2),
    (["runners/beam_runner.py"], 2),
    (["runners/kubeflow_v2_runner.py"], 2),
    (["runners.cli.main", "run"], 2),
    (["runners/airflow_runner.py"], 99),  # Airflow shows a DAG file's exception as an import error
], ids=["local", "beam", "kubeflow_v2", "tfxt-run", "airflow-dag"])
def test_every_entry_point_refuses_a_bad_config_in_one_line_before_tensorflow(
        tmp_path, entry_point, expected_code):
    import subprocess
    import sys

    config = tmp_path / "config.yaml"
    config.write_text(f"data_root: {DATA_ROOT}\nschema_path: {SCHEMA_PATH}\n"
                      "hyperparameters: {learning_rate: .nan}\n")
    process = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT_PROBE, *entry_point], cwd=REPO_ROOT, capture_output=True,
        text=True, env={**os.environ, "TFXT_CONFIG": str(config)}, timeout=120)
    lines = (process.stdout + process.stderr).strip().splitlines()
    assert lines[-1] == "HEAVY=", "TensorFlow or TFX was imported before the config was checked"
    assert process.returncode == expected_code, lines
    assert len(lines) == 2 and "learning_rate must be a positive number, got nan" in lines[0], lines


def test_schema_refresh_without_runs_says_which_config_it_needs(tmp_path):
    from click.testing import CliRunner

    from runners.cli.main import main

    options = ["--set", f"output_dir={tmp_path}", "--set", f"data_root={DATA_ROOT}",
               "--set", f"schema_path={SCHEMA_PATH}"]
    result = CliRunner().invoke(main, ["schema", "refresh", *options], env={"TFXT_CONFIG": None})
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("Config: built-in defaults (no --config, no TFXT_CONFIG)")
    assert len(lines) == 2 and lines[1].startswith("Error: No runs of pipeline 'penguin' on ")
    assert "same config (--config FILE or TFXT_CONFIG)" in lines[1]

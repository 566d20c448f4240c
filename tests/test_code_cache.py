"""Edited user code is not served from the cache (issue 13, case 10).

The template's code is copied into a temporary project and commands run from there (as in
tests/test_adaptation.py), so the test can edit a function body without touching this checkout.
The fingerprints are checked without TensorFlow; one real partial run (up to Transform) before
and after an edit of `preprocessing_fn`'s module shows Transform re-running while ExampleGen and
StatisticsGen still come from the cache.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from pipeline import mlmd
from pipeline.config import load_config
from tests.conftest import REPO_ROOT, RUN_TIMEOUT_SECONDS, write_config
from tests.test_layers import PACKAGES

PRINT_FINGERPRINTS = """
import json
from pipeline.code_fingerprint import code_fingerprint
print(json.dumps({path: code_fingerprint(path) for path in (
    "models.preprocessing.preprocessing_fn", "models.trainer.run_fn", "models.tuning.tuner_fn")}))
"""
# Runs the pipeline up to Transform (TFX's partial run), from the copied project.
RUN_TO_TRANSFORM = """
import os
from pipeline.config import load_config
config = load_config(os.environ["TFXT_CONFIG"])
os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import RunOptions
from pipeline.pipeline import create_pipeline
LocalDagRunner().run(create_pipeline(config), run_options=RunOptions(to_nodes=["Transform"]))
"""
# A body edit that changes what Transform computes, not its interface.
PREPROCESSING_EDIT = ("safe_std = tf.where(std > 0, std, tf.ones_like(std))",
                      "safe_std = tf.where(std > 1e-6, std, tf.ones_like(std))")


def _copy_project(root) -> str:
    project = os.path.join(str(root), "project")
    for package in sorted({p.split(".")[0] for p in PACKAGES} | {"schema"}):
        shutil.copytree(os.path.join(REPO_ROOT, package), os.path.join(project, package),
                        ignore=shutil.ignore_patterns("__pycache__"))
    return project


def _edit(project: str, relative_path: str, old: str, new: str) -> None:
    path = os.path.join(project, relative_path)
    with open(path) as f:
        text = f.read()
    assert old in text, f"{relative_path} no longer holds {old!r}"
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


def _python(project: str, code: str, config_path: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "TFXT_CONFIG": config_path} if config_path else dict(os.environ)
    return subprocess.run([sys.executable, "-c", code], cwd=project, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_SECONDS)


def _fingerprints(project: str) -> dict:
    process = _python(project, PRINT_FINGERPRINTS)
    assert process.returncode == 0, process.stdout[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_an_edit_changes_the_fingerprint_of_exactly_the_code_that_runs_it(tmp_path):
    project = _copy_project(tmp_path)
    before = _fingerprints(project)
    assert _fingerprints(project) == before  # stable while nothing changes
    _edit(project, "models/model.py", "def ", "def _unused():\n    return None\n\n\ndef ")
    after_model = _fingerprints(project)
    preprocessing = "models.preprocessing.preprocessing_fn"
    assert after_model[preprocessing] == before[preprocessing]
    assert after_model["models.trainer.run_fn"] != before["models.trainer.run_fn"]
    assert after_model["models.tuning.tuner_fn"] != before["models.tuning.tuner_fn"]
    _edit(project, "models/features.py", "\n", "\n# a comment is an edit too\n")
    after_features = _fingerprints(project)
    assert all(after_features[path] != after_model[path] for path in after_model)


@pytest.mark.e2e
def test_an_edited_preprocessing_fn_reruns_transform_not_exampleGen(tmp_path):
    project = _copy_project(tmp_path)
    config_path = write_config(str(tmp_path), {"edge": {"enabled": False}})
    first = _python(project, RUN_TO_TRANSFORM, config_path)
    assert first.returncode == 0, first.stdout[-3000:]
    _edit(project, "models/preprocessing.py", *PREPROCESSING_EDIT)
    second = _python(project, RUN_TO_TRANSFORM, config_path)
    assert second.returncode == 0, second.stdout[-3000:]
    config = load_config(config_path)
    store = mlmd.open_store(config)
    first_run, second_run = mlmd.run_ids(store, config.pipeline_name)
    states = {n.node_id: n.state for n in mlmd.run_executions(store, config.pipeline_name, second_run)}
    assert states["CsvExampleGen"] == "CACHED" and states["StatisticsGen"] == "CACHED"
    assert states["Transform"] == "COMPLETE", states
    assert "Trainer" not in states

"""The unchanged re-run's fast path (`pipeline.ops.unchanged`): it serves a recorded run only when
nothing a run depends on changed, and every change takes the real path.

The unit tests record a run over a copied data folder, schema and user module and fake outputs
(no TensorFlow); each then changes one thing. The end-to-end test runs the real runner: a first
run, an all-cached re-run that writes the record, a re-run that the record serves, and one after
the pushed model was deleted, which runs for real.
"""

import io
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from pipeline import mlmd
from pipeline.config import load_config
from pipeline.ops import unchanged
from pipeline.ops.lock import pipeline_lock
from tests.conftest import DATA_ROOT, REPO_ROOT, RUN_TIMEOUT_SECONDS, SCHEMA_PATH, run_pipeline

USER_MODULE = textwrap.dedent("""
    def preprocessing_fn(inputs):
        return inputs
""")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A recorded run over copied inputs and fake outputs; returns a function building its config."""
    shutil.copytree(DATA_ROOT, tmp_path / "data")
    shutil.copy(SCHEMA_PATH, tmp_path / "schema.pbtxt")
    (tmp_path / "usercode").mkdir()
    (tmp_path / "usercode" / "__init__.py").write_text("")
    (tmp_path / "usercode" / "prep.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Finding `usercode.prep` imports `usercode`: each test's own copy, not an earlier test's.
    for name in [name for name in sys.modules if name.split(".")[0] in ("usercode", "templatepkg")]:
        monkeypatch.delitem(sys.modules, name)

    def config(**overrides):
        values = {"output_dir": str(tmp_path / "outputs"), "data_root": str(tmp_path / "data"),
                  "schema_path": str(tmp_path / "schema.pbtxt"),
                  "preprocessing_fn": "usercode.prep.preprocessing_fn", **overrides}
        return load_config(overrides=values)

    first = config()
    version = os.path.join(first.serving_model_dir, "1700000000")
    os.makedirs(os.path.join(first.pipeline_root, "Trainer", "model", "7"))
    (tmp_path / "outputs" / "pipeline_root" / "penguin" / "Trainer" / "model" / "7" / "saved_model.pb"
     ).write_bytes(b"model")
    os.makedirs(version)
    with open(os.path.join(version, "saved_model.pb"), "wb") as f:
        f.write(b"model")
    os.makedirs(os.path.dirname(first.metadata_path))
    with open(first.metadata_path, "wb") as f:
        f.write(b"sqlite")
    unchanged.record(first, unchanged.input_fingerprints(first), "run-1", "1700000000", version,
                     "/reports/run-1/index.html")
    config.root = tmp_path
    config.version = version
    return config


def _serve(config):
    stream = io.StringIO()
    return unchanged.serve_if_unchanged(config, stream), stream.getvalue()


def test_nothing_changed_serves_the_recorded_run(project):
    code, output = _serve(project())
    assert code == 0
    assert output.count("\n") == 1
    assert "Nothing new since run run-1" in output and "version 1700000000" in output
    assert "/reports/run-1/index.html" in output and "--force" in output


def _append(path, text):
    with open(path, "a") as f:
        f.write(text)


def _first_csv(root):
    span = sorted(os.listdir(root / "data"))[0]
    return root / "data" / span / sorted(os.listdir(root / "data" / span))[0]


def _edit_csv_keeping_size_and_time(root):
    path = _first_csv(root)
    stat = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-2] = ord("1") if data[-2] != ord("1") else ord("2")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


CHANGES = {
    "data file changed": (lambda root: _append(_first_csv(root), "\n"), "the data"),
    "data file edited in place, same size and time": (_edit_csv_keeping_size_and_time, "the data"),
    "new span": (lambda root: shutil.copytree(root / "data" / "span-2009", root / "data" / "span-2010"),
                 "the data"),
    "schema changed": (lambda root: _append(root / "schema.pbtxt", "\n# edited\n"), "the schema"),
    "user code changed": (lambda root: _append(root / "usercode" / "prep.py", "\nSCALE = 2\n"), "the code"),
    "pushed model deleted": (lambda root: shutil.rmtree(
        root / "outputs" / "serving_model" / "penguin" / "1700000000"), "the pushed models"),
    "artifact deleted": (lambda root: os.remove(
        root / "outputs" / "pipeline_root" / "penguin" / "Trainer" / "model" / "7" / "saved_model.pb"),
        "the pipeline's artifacts"),
    "metadata written": (lambda root: _append(root / "outputs" / "metadata" / "penguin" / "metadata.db", "x"),
                         "ML Metadata"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_takes_the_real_path(project, change):
    edit, named = CHANGES[change]
    edit(project.root)
    code, output = _serve(project())
    assert code is None
    assert output.startswith("Running: ") and named in output and "run-1" in output


def test_a_changed_config_takes_the_real_path(project):
    code, output = _serve(project(hyperparameters={"train_steps": 301}))
    assert code is None and "the config" in output


def test_template_code_change_takes_the_real_path(project, monkeypatch):
    package = project.root / "templatepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(unchanged, "CODE_PACKAGES", unchanged.CODE_PACKAGES + ("templatepkg",))
    config = project()
    unchanged.record(config, unchanged.input_fingerprints(config), "run-2")
    assert _serve(config)[0] == 0
    (package / "component.py").write_text("X = 1\n")
    code, output = _serve(config)
    assert code is None and "the code" in output


def test_no_record_cache_off_or_a_held_lock_run_for_real(project):
    config = project()
    assert _serve(project(enable_cache=False)) == (None, "")
    with pipeline_lock(config):
        assert _serve(config) == (None, "")
    unchanged.forget(config)
    assert _serve(config) == (None, "")


class _Node:
    def __init__(self, state, type_name):
        self.state, self.type_name = state, type_name
        self.execution = self


class _Store:
    def get_execution_types_by_id(self, ids):
        return [type("ExecutionType", (), {"name": node.type_name})() for node in ids]


def _quiescent(*nodes):
    for node in nodes:
        node.type_id = node  # the fake store reads the type name back from it
    return unchanged.quiescent(_Store(), list(nodes))


def test_only_a_run_with_nothing_executed_but_resolvers_is_quiescent():
    cached = _Node("CACHED", "tfx.components.trainer.component.Trainer")
    resolver = _Node("COMPLETE", unchanged.RESOLVER_TYPE)
    executed = _Node("COMPLETE", "pipeline.components.model_decay.ModelDecay")
    assert _quiescent(cached, resolver)
    assert not _quiescent(cached, resolver, executed)
    assert not _quiescent(_Node("FAILED", unchanged.RESOLVER_TYPE))
    assert not _quiescent()


def _runner(config_path, *args):
    env = {**os.environ, "TFXT_CONFIG": config_path}
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "runners", "local_runner.py"), *args],
                          cwd=os.path.dirname(config_path), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_SECONDS)


@pytest.mark.e2e
def test_runner_serves_an_unchanged_rerun_and_runs_again_without_the_pushed_model(tmp_path):
    # One span (no monitoring, whose ModelDecay executes again once a model is served) and no edge
    # export keep it short.
    first = run_pipeline(str(tmp_path), {"spans": [2009], "hyperparameters": {"train_steps": 50},
                                         "edge": {"enabled": False}})
    assert first.returncode == 0, first.output[-3000:]
    config = first.config
    # The first run trained and pushed: it is not a record of "nothing to do".
    assert unchanged.load(config) is None
    second = _runner(first.config_path)
    assert second.returncode == 0, second.stdout[-3000:]
    recorded = unchanged.load(config)
    store = mlmd.open_store(config)
    runs = mlmd.run_ids(store, config.pipeline_name)
    assert recorded is not None and recorded.run_id == runs[-1] and len(runs) == 2

    served = _runner(first.config_path)
    assert served.returncode == 0, served.stdout[-3000:]
    assert f"Nothing new since run {recorded.run_id}" in served.stdout
    assert "Pipeline 'penguin'" not in served.stdout
    assert mlmd.run_ids(store, config.pipeline_name) == runs

    forced = _runner(first.config_path, "--force")
    assert forced.returncode == 0 and "Nothing new" not in forced.stdout
    runs = mlmd.run_ids(mlmd.open_store(config), config.pipeline_name)
    assert len(runs) == 3

    shutil.rmtree(os.path.join(config.serving_model_dir, recorded.pushed_version))
    again = _runner(first.config_path)
    assert "Running: the pushed models changed" in again.stdout, again.stdout[-3000:]
    assert len(mlmd.run_ids(mlmd.open_store(config), config.pipeline_name)) == 4

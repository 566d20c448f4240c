"""Shared fixtures. Pipeline runs cost tens of seconds, so end-to-end tests share
session-scoped runs instead of starting their own.

`make test` runs two pytest-xdist workers with `--dist loadfile`: a module-scoped run
stays on one worker and is made once; a session-scoped one is made once per worker.

`run_pipeline` starts a runner file in a subprocess, exactly as a user would
(`TFXT_CONFIG=<file> python runners/local_runner.py`), with every output in a
temporary directory. `pushed_pipeline` is the one default run on the bundled
data that serving, edge and tracking tests build on.
"""

import dataclasses
import os
import subprocess
import sys
from typing import Any, Dict, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import pytest  # noqa: E402
import yaml  # noqa: E402

# First of the repo's imports: `pipeline` sets the process's Keras before TensorFlow loads.
from pipeline.config import PipelineConfig, load_config  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_ROOT = os.path.join(REPO_ROOT, "data", "penguins")
SCHEMA_PATH = os.path.join(REPO_ROOT, "schema", "schema.pbtxt")
# Generous: a run takes about two minutes alone, more while other work shares the CPU.
RUN_TIMEOUT_SECONDS = 1200


@dataclasses.dataclass
class PipelineRun:
    """One finished runner process: its config, exit code and console output."""

    config: PipelineConfig
    config_path: str
    returncode: int
    output: str
    # The $TMPDIR the runner process was given, when the caller chose one.
    tmpdir: Optional[str] = None


def write_config(directory: str, values: Dict[str, Any], name: str = "config.yaml") -> str:
    """Writes a config file whose outputs go to `directory`; returns its path."""
    values = {"output_dir": os.path.join(directory, "outputs"), "data_root": DATA_ROOT,
              "schema_path": SCHEMA_PATH, **values}
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        yaml.safe_dump(values, f)
    return path


def run_pipeline(directory: str, values: Optional[Dict[str, Any]] = None,
                 runner: str = "runners/local_runner.py", config_path: Optional[str] = None,
                 extra_env: Optional[Dict[str, str]] = None) -> PipelineRun:
    """Runs `runner` in a subprocess with a config writing under `directory`."""
    config_path = config_path or write_config(directory, values or {})
    env = {**os.environ, "TFXT_CONFIG": config_path, **(extra_env or {})}
    process = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, runner)], cwd=directory, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_SECONDS)
    return PipelineRun(load_config(config_path, base_dir=directory), config_path,
                       process.returncode, process.stdout, env.get("TMPDIR"))


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(scope="session")
def pushed_pipeline(tmp_path_factory) -> PipelineRun:
    """The default pipeline, run once on the bundled data; it must have pushed a model.

    Its $TMPDIR is a fresh folder of its own, so a test can check that a run leaves nothing there.
    """
    directory = tmp_path_factory.mktemp("pushed_pipeline")
    os.makedirs(directory / "tmp")
    run = run_pipeline(str(directory), extra_env={"TMPDIR": str(directory / "tmp")})
    assert run.returncode == 0, run.output[-5000:]
    return run


@pytest.fixture(scope="session")
def ram_filesystem():
    """TensorFlow's in-process `ram://` filesystem, registered with TFX's `fileio` like gs:// is.

    Artifact URIs on Vertex and Dataflow are gs://, which cannot be reached from
    here; `ram://` is a non-local filesystem that TensorFlow provides in-process,
    so code that reads and writes through `fileio` (or `tf.io.gfile`) works on it,
    while `os`, `open` and `shutil` treat "ram://x" as a local relative path.
    """
    from tfx.dsl.io import filesystem_registry
    from tfx.dsl.io.plugins import tensorflow_gfile

    class RamFilesystem(tensorflow_gfile.TensorflowFilesystem):
        SUPPORTED_SCHEMES = ["ram://"]

    filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY.register(RamFilesystem, priority=20)
    return "ram://"


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    """A throwaway MariaDB server on loopback (`tests.mariadb`), one per test module."""
    from tests.mariadb import binaries, mariadb_server

    if binaries() is None:
        pytest.skip("MariaDB is not installed; `sudo .ci/install-system-deps` installs it "
                    "(.ci/run does this before `make test`).")
    with mariadb_server(str(tmp_path_factory.mktemp("mariadb"))) as server:
        yield server

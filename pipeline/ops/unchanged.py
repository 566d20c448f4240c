"""The unchanged re-run's fast path: a run with nothing new ends before TensorFlow and TFX load.

A cached re-run of the pipeline executes nothing (every component comes from TFX's cache), yet
costs 20-40 s of imports. `tfxt run` and `runners/local_runner.py` call `serve_if_unchanged`
first, with only the config loaded; it answers from a small state file next to the metadata DB.

`run_and_report` writes that file (`record`) after a run that exited 0 and in which every
component came from the cache (only resolvers executed): that run saw these inputs and had
nothing left to do, so a run on the same inputs would do nothing again. The file holds
fingerprints of everything such a run depends on, taken when it started (inputs) and ended
(outputs):

- inputs: the config; the schema file; every file under `data_root` (name, size, content);
  the template's code (every file of its packages) and the modules the config's dotted paths
  name; Python's and the ML packages' versions;
- outputs: the metadata DB (size and modification time: any later run or change writes it),
  and every file and folder under the pipeline root and the serving folder (size and time), so
  a deleted or replaced artifact or pushed model is seen.

Any difference, a missing or unreadable file, a held run lock, a MySQL store, non-local paths
or `enable_cache: false` take the real path; `--force` always does. A real run first removes
the file (`forget`), so only its own outcome can write it again. Nothing here imports
TensorFlow, TFX or ML Metadata.
"""

import dataclasses
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from typing import Dict, Iterable, List, Optional, TextIO

from pipeline.config import PipelineConfig
from pipeline.ops.lock import LockHeldError, pipeline_lock

# The template's packages (setup.py): code a run executes, whether or not TFX's cache sees it.
CODE_PACKAGES = ("pipeline", "models", "serving", "edge", "runners")
# Distributions whose version changes what a run computes.
DISTRIBUTIONS = ("tfx", "tensorflow", "tf-keras", "tensorflow-transform", "tensorflow-model-analysis",
                 "tensorflow-data-validation", "tfx-bsl", "apache-beam", "ml-metadata")
# The execution type of resolver nodes: they resolve artifacts and write nothing.
RESOLVER_TYPE = "tfx.dsl.components.common.resolver.Resolver"
# What each input fingerprint is called in the message naming what changed.
INPUT_NAMES = {"config": "the config", "schema": "the schema", "data": "the data",
               "code": "the code", "packages": "the installed packages"}
OUTPUT_NAMES = {"metadata": "ML Metadata", "pipeline_root": "the pipeline's artifacts",
                "serving": "the pushed models"}


@dataclasses.dataclass(frozen=True)
class Record:
    """The last run that had nothing to do, and what it saw."""

    run_id: str
    finished: str
    inputs: Dict[str, str]
    outputs: Dict[str, str]
    pushed_version: Optional[str] = None
    pushed_path: Optional[str] = None
    report: Optional[str] = None


def state_path(config: PipelineConfig) -> str:
    return os.path.join(os.path.dirname(config.metadata_path), f"{config.pipeline_name}.unchanged.json")


def unsupported(config: PipelineConfig) -> Optional[str]:
    """Why the fast path cannot vouch for `config`'s runs, or None when it can."""
    if not config.enable_cache:
        return "enable_cache is false"
    if config.metadata.backend != "sqlite":
        return "the metadata store is not SQLite"
    paths = (config.output_dir, config.data_root, config.schema_path, config.metadata_path)
    if any("://" in path for path in paths):
        return "a path is not local"
    return None


def serve_if_unchanged(config: PipelineConfig, stream: TextIO = sys.stdout) -> Optional[int]:
    """Exit code 0 after one line naming the run that covers these inputs, or None: run for real."""
    if unsupported(config) or not os.path.exists(state_path(config)):
        return None
    try:
        with pipeline_lock(config):
            record = load(config)
            changed = differences(config, record) if record else []
    except LockHeldError:
        return None  # the real path says who holds it
    except OSError:
        return None  # a file that cannot be read: the real path reports it if it matters
    if record is None:
        return None
    if changed:
        stream.write(f"Running: {', '.join(changed)} changed since run {record.run_id}, "
                     "the last one with nothing to do.\n")
        return None
    served = (f"version {record.pushed_version} ({record.pushed_path})" if record.pushed_version
              else "no model")
    stream.write(f"Nothing new since run {record.run_id} (finished {record.finished}): same config, "
                 f"data, schema, code and outputs, and that run took every component from the cache. "
                 f"Serving {served}; its report: {record.report or 'none'}. Not run again "
                 "(`--force` runs it anyway).\n")
    return 0


def differences(config: PipelineConfig, record: Record) -> List[str]:
    """What differs from `record`, named for the user (empty: nothing)."""
    inputs, outputs = input_fingerprints(config), output_fingerprints(config)
    changed = ([INPUT_NAMES[key] for key in INPUT_NAMES if inputs.get(key) != record.inputs.get(key)]
               + [OUTPUT_NAMES[key] for key in OUTPUT_NAMES if outputs.get(key) != record.outputs.get(key)])
    if record.pushed_path and not os.path.isdir(record.pushed_path) and "the pushed models" not in changed:
        # Gone before that run was recorded: never claim to serve it.
        changed.append("the served model (missing)")
    return changed


def input_fingerprints(config: PipelineConfig) -> Dict[str, str]:
    """Fingerprints of what a run reads: config, schema, data, code, package versions."""
    settings = {**config.to_dict(), "schema_fingerprint": ""}
    dotted = [config.preprocessing_fn, config.run_fn, config.tuner.tuner_fn]
    return {
        "config": _hash([json.dumps(settings, sort_keys=True)]),
        "schema": _hash([_file_digest(config.schema_path)]),
        "data": _hash(_tree(config.data_root, content=True)),
        "code": _hash(_code_entries(dotted)),
        "packages": _hash([sys.version] + [f"{name}={_version(name)}" for name in DISTRIBUTIONS]),
    }


def output_fingerprints(config: PipelineConfig) -> Dict[str, str]:
    """Fingerprints of what a run leaves: the metadata DB, the artifacts, the pushed models."""
    database = [f"{suffix}:{_stat(config.metadata_path + suffix)}" for suffix in ("", "-journal", "-wal")]
    return {
        "metadata": _hash(database),
        "pipeline_root": _hash(_tree(config.pipeline_root, content=False)),
        "serving": _hash(_tree(config.serving_model_dir, content=False)),
    }


def quiescent(store, nodes) -> bool:
    """Whether a run's executions (`pipeline.mlmd.NodeExecution`) all came from the cache.

    Resolvers execute in every run and write nothing, so they do not count.
    """
    if not nodes:
        return False
    for node in nodes:
        if node.state == "CACHED":
            continue
        if node.state != "COMPLETE" or store.get_execution_types_by_id(
                [node.execution.type_id])[0].name != RESOLVER_TYPE:
            return False
    return True


def record(config: PipelineConfig, inputs: Dict[str, str], run_id: str,
           pushed_version: Optional[str] = None, pushed_path: Optional[str] = None,
           report: Optional[str] = None) -> Optional[Record]:
    """Writes the state file for run `run_id`, whose start saw `inputs`; call it under the run lock.

    The caller has checked that the run exited 0 and was `quiescent`. Does nothing for a config
    the fast path does not support.
    """
    if unsupported(config):
        return None
    finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result = Record(run_id, finished, dict(inputs), output_fingerprints(config),
                    pushed_version, pushed_path, report)
    path = state_path(config)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(result), f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)
    return result


def load(config: PipelineConfig) -> Optional[Record]:
    try:
        with open(state_path(config), encoding="utf-8") as f:
            return Record(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def forget(config: PipelineConfig) -> None:
    """Removes the state file: what a real run does first."""
    try:
        os.remove(state_path(config))
    except FileNotFoundError:
        pass


def _hash(entries: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(entry.encode() + b"\0")
    return digest.hexdigest()


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        return f"unreadable {type(e).__name__}"
    return digest.hexdigest()


def _stat(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _tree(root: str, content: bool) -> List[str]:
    """One entry per folder and file under `root`: its relative path, then its content hash
    (`content`) or its size and modification time."""
    if not os.path.isdir(root):
        return ["missing"]
    entries = []
    for folder, folders, files in os.walk(root):
        folders.sort()
        relative = os.path.relpath(folder, root)
        entries.append(f"d {relative}")
        for name in sorted(files):
            path = os.path.join(folder, name)
            detail = _file_digest(path) if content else _stat(path)
            entries.append(f"f {os.path.join(relative, name)} {detail}")
    return entries


def _code_entries(dotted_paths: Iterable[str]) -> List[str]:
    entries = []
    for package in CODE_PACKAGES:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            entries += [entry for entry in _tree(location, content=True) if "__pycache__" not in entry]
    for dotted_path in dotted_paths:
        module = dotted_path.rsplit(".", 1)[0]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec and spec.origin else "missing"
        entries.append(f"{dotted_path} {origin} {_file_digest(origin)}")
    return entries


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"

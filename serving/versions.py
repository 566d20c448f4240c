"""Canary, promote and rollback: which pushed versions carry the `stable`, `canary` and `previous` labels.

The labels live in models.config (see `serving.server_files`); every change rewrites
it atomically, and TF Serving or the local server picks it up while running.
Every change is a move TF Serving accepts (`serving.tfs_rules`): a label only
moves to a version that is already loaded, so `promote` keeps the old stable
version loaded as `previous`, and `rollback` moves `stable` back to it in one
step. Each new config is checked against the one on disk before it is written.
A version is *ready* when its directory holds saved_model.pb (Pusher copies that
file last) and *blessed* when its `assets.extra/blessing.json` says the
Evaluator blessed it (`serving.warmup`). Labels only ever point at versions
that are ready and blessed.

Called by `tfxt serving versions|canary|promote|rollback` (`runners.cli.serving`) and tests.
"""

import dataclasses
import os
from typing import Dict, List, Optional

from pipeline.config import PipelineConfig
from serving import server_files, tfs_rules
from serving.server_files import CANARY, PREVIOUS, STABLE, ServingPaths
from serving.warmup import read_blessing


class VersionError(ValueError):
    """A label change that cannot be made; the message says why and what to do."""


class RollbackPending(VersionError):
    """Rollback's target was not loaded: models.config now loads it as `previous`; roll back again."""


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    version: int
    blessed: bool
    labels: tuple


def ready_versions(serving_model_dir: str) -> List[int]:
    """Versions under `serving_model_dir` whose saved_model.pb is in place, oldest first."""
    if not os.path.isdir(serving_model_dir):
        return []
    return sorted(int(name) for name in os.listdir(serving_model_dir)
                  if name.isdigit() and os.path.isfile(
                      os.path.join(serving_model_dir, name, "saved_model.pb")))


def is_blessed(serving_model_dir: str, version: int) -> bool:
    return bool(read_blessing(os.path.join(serving_model_dir, str(version))).get("blessed"))


def blessed_versions(serving_model_dir: str) -> List[int]:
    """Ready versions the Evaluator blessed, oldest first."""
    return [v for v in ready_versions(serving_model_dir) if is_blessed(serving_model_dir, v)]


def current_labels(paths: ServingPaths) -> Dict[str, int]:
    """The version labels of models.config (empty when it does not exist)."""
    if not os.path.exists(paths.models_config):
        return {}
    server_config = server_files.read_models_config(paths.models_config)
    for model in server_config.model_config_list.config:
        if model.name == paths.model_name:
            return dict(model.version_labels)
    return {}


def list_versions(paths: ServingPaths) -> List[VersionInfo]:
    """Every ready version with its blessing and labels, newest first."""
    labels = current_labels(paths)
    return [VersionInfo(v, is_blessed(paths.serving_model_dir, v),
                        tuple(sorted(k for k, lv in labels.items() if lv == v)))
            for v in reversed(ready_versions(paths.serving_model_dir))]


def stable_version(paths: ServingPaths) -> Optional[int]:
    """The `stable` version; without labels, the newest ready version (what TF Serving serves)."""
    labels = current_labels(paths)
    if STABLE in labels:
        return labels[STABLE]
    ready = ready_versions(paths.serving_model_dir)
    return ready[-1] if ready else None


def set_canary(paths: ServingPaths, version: int) -> Dict[str, int]:
    """Labels `version` canary next to the current stable (and previous); returns the new labels."""
    _check_servable(paths, version, "canary")
    stable = stable_version(paths)
    if stable is None or stable == version:
        raise VersionError(f"Version {version} is already stable (or nothing is); a canary must be "
                           "a different version. Push a new model first.")
    labels = {STABLE: stable, CANARY: version}
    previous = current_labels(paths).get(PREVIOUS)
    if previous is not None and previous not in (stable, version):
        labels[PREVIOUS] = previous
    return _write(paths, labels)


def promote(paths: ServingPaths) -> Dict[str, int]:
    """Moves `stable` to the canary version; the old stable stays loaded as `previous`."""
    labels = current_labels(paths)
    canary = labels.get(CANARY)
    if canary is None:
        raise VersionError("No version is labelled canary; run `tfxt serving canary VERSION` first.")
    _check_servable(paths, canary, "stable")
    new_labels = {STABLE: canary}
    if labels.get(STABLE) is not None and labels[STABLE] != canary:
        new_labels[PREVIOUS] = labels[STABLE]
    return _write(paths, new_labels)


def rollback(paths: ServingPaths) -> Dict[str, int]:
    """Points `stable` back at the `previous` version, which is loaded; drops `canary`.

    Without a usable `previous` label (a second rollback, or none was ever
    promoted), the target is the newest blessed, present version older than
    stable. It is not loaded, and TF Serving refuses to move a label to a
    version that is not loaded, so this writes a models.config that loads it as
    `previous` and raises RollbackPending: once the server reports the version
    AVAILABLE, call rollback again to move `stable`.

    Raises:
      VersionError: nothing to roll back to.
      RollbackPending: the target is loading; roll back again once it is available.
    """
    labels = current_labels(paths)
    stable = stable_version(paths)
    if stable is None:
        raise VersionError(f"No versions in {paths.serving_model_dir}; there is nothing to roll back.")
    previous = labels.get(PREVIOUS)
    if (previous is not None and previous != stable and previous in ready_versions(paths.serving_model_dir)
            and is_blessed(paths.serving_model_dir, previous)):
        return _write(paths, {STABLE: previous})
    earlier = [v for v in blessed_versions(paths.serving_model_dir) if v < stable]
    if not earlier:
        raise VersionError(f"No blessed version older than stable {stable} is present in "
                           f"{paths.serving_model_dir}; stable stays at {stable}.")
    _write(paths, {STABLE: stable, PREVIOUS: earlier[-1]})
    raise RollbackPending(
        f"Version {earlier[-1]} was not loaded, and TF Serving moves a label only to a loaded version: "
        f"{paths.models_config} now loads it as `previous` next to stable {stable}. Once the server "
        f"reports version {earlier[-1]} AVAILABLE (GET /v1/models/{paths.model_name}/versions/"
        f"{earlier[-1]}), run `tfxt serving rollback` again.")


def _check_servable(paths: ServingPaths, version: int, label: str) -> None:
    if version not in ready_versions(paths.serving_model_dir):
        raise VersionError(f"Version {version} is not in {paths.serving_model_dir} (or its "
                           f"saved_model.pb is missing); it cannot be {label}. "
                           "See `tfxt serving versions`.")
    if not is_blessed(paths.serving_model_dir, version):
        raise VersionError(f"Version {version} was not blessed by the Evaluator (no blessing record "
                           f"in its assets.extra); it cannot be {label}.")


def _write(paths: ServingPaths, labels: Dict[str, int]) -> Dict[str, int]:
    """Writes `labels` into models.config, if TF Serving would accept the change from the file on disk."""
    model_base_path = paths.model_base_path
    current = None
    if os.path.exists(paths.models_config):
        current = server_files.read_models_config(paths.models_config)
        for model in current.model_config_list.config:
            if model.name == paths.model_name:
                model_base_path = model.base_path
    new_config = server_files.model_server_config(paths.model_name, model_base_path, labels)
    check_transition(paths, current, new_config)
    server_files.write_models_config(paths.models_config, new_config)
    return labels


def check_transition(paths: ServingPaths, current, new_config) -> None:
    """Raises VersionError if TF Serving, serving `current`, would refuse `new_config` (tfs_rules)."""
    present = {paths.model_name: ready_versions(paths.serving_model_dir)}
    # What the server holds once `current` has been applied: its versions loaded, its labels set.
    state = tfs_rules.state_serving(current, present) if current is not None else tfs_rules.ServerState()
    try:
        tfs_rules.apply(new_config, state, present, allow_unavailable=True)
    except tfs_rules.RuleError as e:
        raise VersionError(f"TF Serving would refuse this models.config change: {e}") from None


def write_serving_files(config: PipelineConfig, labels: Optional[Dict[str, int]] = None,
                        keep_labels: bool = True) -> Dict[str, str]:
    """Writes models.config, the batching and monitoring files; returns their paths.

    Args:
      config: the pipeline config.
      labels: version labels to write; None keeps those of an existing
        models.config (when `keep_labels`), else labels the newest blessed
        version `stable`.
      keep_labels: whether to keep the labels of an existing models.config.

    Raises:
      VersionError: `keep_labels` is False and TF Serving, serving the existing
        models.config, would refuse the new labels (stable moved to a version it has
        not loaded); use canary and promote instead.
    """
    paths = server_files.serving_paths(config)
    if labels is None and keep_labels and os.path.exists(paths.models_config):
        labels = current_labels(paths)
    if labels is None:
        blessed = blessed_versions(paths.serving_model_dir)
        labels = {STABLE: blessed[-1]} if blessed else {}
    new_config = server_files.model_server_config(paths.model_name, paths.model_base_path, labels,
                                                  config.serving.num_versions)
    if not keep_labels and os.path.exists(paths.models_config):
        # A reset may move stable to a version the running server has not loaded.
        check_transition(paths, server_files.read_models_config(paths.models_config), new_config)
    files = {
        server_files.MODELS_CONFIG: paths.models_config,
        server_files.BATCHING_CONFIG: os.path.join(paths.config_dir, server_files.BATCHING_CONFIG),
        server_files.MONITORING_CONFIG: os.path.join(paths.config_dir, server_files.MONITORING_CONFIG),
    }
    server_files.write_models_config(files[server_files.MODELS_CONFIG], new_config)
    server_files.atomic_write(files[server_files.BATCHING_CONFIG],
                              server_files.batching_parameters(config.serving))
    server_files.atomic_write(files[server_files.MONITORING_CONFIG], server_files.monitoring_config())
    return files

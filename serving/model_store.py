"""The local server's loaded models: version policy, labels and hot reload.

`ModelStore` follows TF Serving's model manager closely enough for the local
server: it reads models.config (or serves one base path with "latest N"),
loads the versions the policy selects, warms each one (its warmup requests, then
one call of every signature they leave out: `LoadedVersion.replay_warmup`)
before it takes traffic, and resolves requests by version number or label.

Labels follow TF Serving's rules (`serving.tfs_rules`): they are checked
against the versions available *before* the new config loads anything, so a
label may not move to a version that is not loaded (R5), and a config that
breaks a rule is refused while the previous state keeps serving (R6). A version
that fails to load never replaces a healthy one (R8): without an available
version the policy asked for, the newest previously loaded version stays.

Hot reload: a background thread re-scans the version directories and
models.config every `poll_seconds`. New versions are loaded *before* the new
state is published, and the state is one immutable snapshot swapped in a single
assignment, so a request sees either the old or the new set of versions and a
label never points at a version that is still loading. A version dropped by the
policy stays alive until the requests holding it finish (Python references),
so no in-flight request fails.
"""

import dataclasses
import logging
import os
import threading
import time
from typing import Dict, List, Mapping, Optional, Tuple

import grpc

from serving import inference, tfs_rules
from serving.errors import ServingError

log = logging.getLogger(__name__)

# Seconds before a version that failed to load is tried again.
RETRY_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class ModelState:
    """One model's loaded versions and labels at one moment."""

    name: str
    base_path: str
    versions: Mapping[int, inference.LoadedVersion]
    labels: Mapping[str, int]
    # Versions that failed to load, with the reason (reported by model status).
    errors: Mapping[int, str]


class ModelStore:
    """Loads and resolves served versions; thread-safe for concurrent requests."""

    def __init__(self, models_config: Optional[str] = None, model_name: Optional[str] = None,
                 base_path: Optional[str] = None, num_versions: int = 1, poll_seconds: float = 1.0,
                 warmup: bool = True, allow_unavailable_labels: bool = True):
        if not models_config and not (model_name and base_path):
            raise ValueError("Give models_config, or model_name and base_path.")
        self.models_config = models_config
        self._default = (model_name, base_path, num_versions)
        self.poll_seconds = poll_seconds
        self.warmup = warmup
        # TF Serving's --allow_version_labels_for_unavailable_models (R5).
        self.allow_unavailable_labels = allow_unavailable_labels
        self._models: Dict[str, ModelState] = {}
        # A config applied through HandleReloadConfigRequest, with the file's mtime then.
        self._override = None
        self._failed_at: Dict[Tuple[str, int], float] = {}
        # The last refusal per model, so a refused models.config is logged once, not every poll.
        self._refused: Dict[str, str] = {}
        self._config_mtime: Optional[float] = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.last_error: Optional[str] = None

    # Lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Loads the initial versions, then polls for changes in a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="model-store-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as e:  # noqa: BLE001 - keep serving the last good state
                self.last_error = str(e)
                log.exception("Reload failed; still serving the previous versions")

    # Requests ---------------------------------------------------------------

    def resolve(self, name: str, version: Optional[int] = None,
                label: Optional[str] = None) -> inference.LoadedVersion:
        """The loaded version a request asks for, with TF Serving's errors."""
        model = self._models.get(name)
        if model is None or not model.versions:
            request = (f"Specific({name}, {version})" if version is not None else f"Latest({name})")
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}")
        if label is not None:
            if label not in model.labels:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Unrecognized servable version label: {label}")
            version = model.labels[label]
        if version is None:
            return model.versions[max(model.versions)]
        loaded = model.versions.get(version)
        if loaded is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        return loaded

    def status(self, name: str, version: Optional[int] = None,
               label: Optional[str] = None) -> List[Tuple[int, str, str]]:
        """(version, state, error message) of the model's versions, as GetModelStatus reports."""
        model = self._models.get(name)
        if model is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        # TF Serving's GetModelStatus ignores version_label and reports every version
        # (get_model_status_impl.cc), so an unknown label is no error here either.
        del label
        rows = [(v, "AVAILABLE", "") for v in model.versions]
        rows += [(v, "END", message) for v, message in model.errors.items() if v not in model.versions]
        if version is not None:
            rows = [row for row in rows if row[0] == version]
            if not rows:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model {name}")
        return sorted(rows, reverse=True)

    def model_names(self) -> List[str]:
        return sorted(self._models)

    def labels(self, name: str) -> Dict[str, int]:
        model = self._models.get(name)
        return dict(model.labels) if model else {}

    # Reloading --------------------------------------------------------------

    def apply_config(self, server_config) -> None:
        """Serves `server_config` (a ModelServerConfig), as HandleReloadConfigRequest does.

        It holds until models.config changes on disk; then the file wins again.
        """
        self._override = (server_config, self._file_mtime())
        self.refresh()

    def _file_mtime(self) -> Optional[int]:
        if self.models_config and os.path.exists(self.models_config):
            return os.stat(self.models_config).st_mtime_ns
        return None

    def refresh(self) -> None:
        """Re-reads the config and version directories; loads, then publishes, the new state."""
        with self._refresh_lock:
            self.last_error = None
            server_config = self._read_config()
            models: Dict[str, ModelState] = {}
            for model_config in server_config.model_config_list.config:
                previous = self._models.get(model_config.name)
                try:
                    models[model_config.name] = self._load_model(model_config, previous)
                    self._refused.pop(model_config.name, None)
                except ServingError as e:
                    # Like TF Serving, refuse the new config for this model and keep
                    # serving what was there.
                    if e.message != self._refused.get(model_config.name):
                        log.error("models.config not applied to %s: %s", model_config.name, e.message)
                    self._refused[model_config.name] = e.message
                    self.last_error = e.message
                    if previous is not None:
                        models[model_config.name] = previous
            self._models = models

    def _read_config(self):
        from serving import server_files

        if self._override is not None:
            override, mtime_then = self._override
            if self._file_mtime() == mtime_then:
                return override
            self._override = None
        if self.models_config and os.path.exists(self.models_config):
            mtime = self._file_mtime()
            if mtime != self._config_mtime or not hasattr(self, "_config"):
                self._config = server_files.read_models_config(self.models_config)
                self._config_mtime = mtime
            return self._config
        if self.models_config and not self._default[0]:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"{self.models_config} does not exist")
        name, base_path, num_versions = self._default
        return server_files.model_server_config(name, base_path, None, num_versions)

    def _load_model(self, model_config, previous: Optional[ModelState]) -> ModelState:
        from serving.versions import ready_versions

        present = ready_versions(model_config.base_path)
        wanted = tfs_rules.policy_versions(model_config, present)
        labels = dict(model_config.version_labels)
        try:
            # R4/R5: TF Serving applies labels before it loads the config's versions.
            tfs_rules.check_labels(model_config.name, labels, previous.versions if previous else (),
                                   previous.labels if previous else {}, self.allow_unavailable_labels)
        except tfs_rules.RuleError as e:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
        missing = sorted({v for v in labels.values() if v not in wanted or v not in present})
        if missing:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Labels point at versions {missing} that are not present or not "
                               "selected by the version policy")
        versions: Dict[int, inference.LoadedVersion] = {}
        errors = dict(previous.errors) if previous else {}
        for version in wanted:
            loaded = previous.versions.get(version) if previous else None
            if loaded is None and (version not in errors or self._retry_due(model_config.name, version)):
                try:
                    loaded = inference.LoadedVersion.load(
                        model_config.name, version, os.path.join(model_config.base_path, str(version)),
                        warmup=self.warmup)
                except Exception as e:  # noqa: BLE001 - a broken version must not stop the server
                    errors[version] = f"Failed to load version {version}: {e}"
                    self._failed_at[(model_config.name, version)] = time.monotonic()
                    log.error(errors[version])
            if loaded is not None:
                versions[version] = loaded
                errors.pop(version, None)
        if wanted and not versions and previous is not None and previous.versions:
            # R8: no version the policy asks for is available, so the newest one that
            # served before keeps serving (TF Serving's availability-preserving policy).
            kept = max(previous.versions)
            versions[kept] = previous.versions[kept]
        unavailable = sorted(v for v in labels.values() if v not in versions)
        if unavailable:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Labelled versions {unavailable} failed to load")
        return ModelState(model_config.name, model_config.base_path, versions, labels, errors)

    def _retry_due(self, name: str, version: int) -> bool:
        """Whether to try loading a version that failed again (a copy may have been completed)."""
        return time.monotonic() - self._failed_at.get((name, version), 0.0) > RETRY_SECONDS

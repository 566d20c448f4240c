"""TF Serving's rules for a models.config transition, written down so a config can be checked here.

`tensorflow_model_server` cannot be installed on this machine, so the rules it
applies when it reads a new `ModelServerConfig` are reproduced here from its
source and docs. The local server's `ModelStore` applies `check_labels` before it
loads anything (as TF Serving does), `serving.versions` checks every config it
writes against the one on disk, and the tests replay the whole canary ->
promote -> rollback sequence through `replay`.

Rules, with where they come from (tensorflow/serving):

R1. Model names are unique in the list ("Illegal to list model X multiple
    times in config list"). `ValidateModelConfigList`, model_servers/server_core.cc.
R2. Every base_path is an absolute path or a URI (no model_config_list_root_dir
    is used here). `ValidateModelConfigList`, server_core.cc.
R3. model_platform is set ("Illegal setting neither ... model_type nor
    model_platform") and a model never changes platform between configs.
    `GetPlatform`, `ValidateNoModelsChangePlatforms`, server_core.cc.
R4. Labels are applied BEFORE the new config's versions load:
    `ServerCore::ReloadConfig` calls `UpdateModelVersionLabelMap()` and only then
    `AddModelsViaModelConfigList()` (server_core.cc). So:
R5. A label may only point at a version that is AVAILABLE now ("Request to
    assign label to version N of model M, which is not currently available for
    inference", FAILED_PRECONDITION), unless
    `--allow_version_labels_for_unavailable_models` is set AND the label is not
    currently assigned to a different version, i.e. a new label may point at a
    version that is still loading, but an existing label may not move to one.
    `UpdateModelVersionLabelMap`, server_core.cc; serving_config.md ("Assigning
    a label ... This applies only to new version labels (i.e. ones not assigned to
    a version currently)"). At start-up nothing is available, so every label in
    the first models.config needs the flag.
R6. When a config is refused, the label map stays as it was and no new version
    loads (the error returns before `AddModelsViaModelConfigList`).
R7. After a config is accepted, the versions its `model_version_policy` selects
    are loaded and the others unloaded (`latest` N newest, `all`, or `specific`
    versions; serving_config.md "Serving a specific version of a model"). A
    label on a version the policy does not select would point at an unloaded
    version, so requests to it would fail: refused here (the project's rule,
    derived from R5 and R7).
R8. A version that fails to load never replaces a healthy one: the
    availability-preserving policy unloads a version the policy dropped only
    once an aspired version is AVAILABLE. `AvailabilityPreservingPolicy::
    GetNextAction`, core/availability_preserving_policy.cc.
"""

import dataclasses
from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple

# TF Serving's flag that the generated Docker command and Kubernetes manifest pass.
ALLOW_UNAVAILABLE_LABELS_FLAG = "--allow_version_labels_for_unavailable_models=true"


class RuleError(ValueError):
    """A config TF Serving would refuse; the message is TF Serving's, plus the rule."""


@dataclasses.dataclass(frozen=True)
class ServerState:
    """What a TF Serving process holds between configs: per model, versions available, labels, platform."""

    available: Mapping[str, frozenset] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, Mapping[str, int]] = dataclasses.field(default_factory=dict)
    platforms: Mapping[str, str] = dataclasses.field(default_factory=dict)


def check_labels(model_name: str, labels: Mapping[str, int], available: Iterable[int],
                 current_labels: Mapping[str, int], allow_unavailable: bool) -> None:
    """R5: raises RuleError if TF Serving would refuse these labels now."""
    available = set(available)
    for label, version in sorted(labels.items()):
        if version in available:
            continue
        existing = current_labels.get(label)
        if allow_unavailable and (existing is None or existing == version):
            continue
        reason = ("the label already points at version "
                  f"{existing}, and moving a label needs its target loaded" if allow_unavailable
                  else "start TF Serving with " + ALLOW_UNAVAILABLE_LABELS_FLAG)
        raise RuleError(f"Request to assign label to version {version} of model {model_name}, which is "
                        f"not currently available for inference (label {label!r}; {reason}).")


def policy_versions(model_config, present: Iterable[int]) -> List[int]:
    """R7: the versions a ModelConfig's version policy selects among `present`, oldest first."""
    present = sorted(set(present))
    policy = model_config.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return present
    if kind == "specific":
        return sorted(set(policy.specific.versions) & set(present))
    num_versions = policy.latest.num_versions if kind == "latest" else 1
    return present[-max(num_versions, 1):] if present else []


def check_config(server_config, state: ServerState) -> None:
    """R1-R3 and R7 for a whole ModelServerConfig (R7 against the listed `specific` versions)."""
    names: Set[str] = set()
    for model in server_config.model_config_list.config:
        if model.name in names:
            raise RuleError(f"Illegal to list model {model.name} multiple times in config list")
        names.add(model.name)
        if not (model.base_path.startswith("/") or "://" in model.base_path):
            raise RuleError(f"Expected model {model.name} to have an absolute path or URI; "
                            f"got base_path()={model.base_path}")
        if not model.model_platform:
            raise RuleError("Illegal setting neither ModelServerConfig::model_type (deprecated) "
                            f"nor ModelServerConfig::model_platform (model {model.name}).")
        old_platform = state.platforms.get(model.name)
        if old_platform and old_platform != model.model_platform:
            raise RuleError(f"Illegal to change a model's platform. For model {model.name} platform was "
                            f"{old_platform} and new platform requested is {model.model_platform}")
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific":
            unserved = sorted(set(model.version_labels.values()) - set(policy.specific.versions))
            if unserved:
                raise RuleError(f"Model {model.name}: labels point at versions {unserved} that the "
                                "version policy does not serve; requests to those labels would fail.")


def apply(server_config, state: ServerState, present: Mapping[str, Iterable[int]],
          allow_unavailable: bool) -> ServerState:
    """The state after TF Serving accepts `server_config`, assuming every selected version loads.

    Raises:
      RuleError: TF Serving would refuse the config (R1-R7); the state is then unchanged (R6).
    """
    check_config(server_config, state)
    for model in server_config.model_config_list.config:
        check_labels(model.name, dict(model.version_labels), state.available.get(model.name, ()),
                     state.labels.get(model.name, {}), allow_unavailable)
    available, labels, platforms = {}, {}, dict(state.platforms)
    for model in server_config.model_config_list.config:
        selected = policy_versions(model, present.get(model.name, ()))
        available[model.name] = frozenset(selected)
        labels[model.name] = dict(model.version_labels)
        platforms[model.name] = model.model_platform
        dangling = sorted(v for v in labels[model.name].values() if v not in selected)
        if dangling:
            raise RuleError(f"Model {model.name}: labels point at versions {dangling} that are not "
                            "present or not selected by the version policy.")
    return ServerState(available, labels, platforms)


def state_serving(server_config, present: Mapping[str, Iterable[int]]) -> ServerState:
    """The state of a server that has been serving `server_config` for a while (no checks)."""
    available, labels, platforms = {}, {}, {}
    for model in server_config.model_config_list.config:
        available[model.name] = frozenset(policy_versions(model, present.get(model.name, ())))
        labels[model.name] = dict(model.version_labels)
        platforms[model.name] = model.model_platform
    return ServerState(available, labels, platforms)


def replay(configs: Iterable[Tuple[str, object]], present: Mapping[str, Iterable[int]],
           allow_unavailable: bool = True, state: Optional[ServerState] = None
           ) -> List[Tuple[str, ServerState]]:
    """Applies named configs in order from a fresh server; returns the state after each.

    Raises:
      RuleError: naming the step whose config TF Serving would refuse.
    """
    state = state or ServerState()
    states = []
    for step, server_config in configs:
        try:
            state = apply(server_config, state, present, allow_unavailable)
        except RuleError as e:
            raise RuleError(f"step {step!r}: {e}") from None
        states.append((step, state))
    return states


def labels_of(server_config, model_name: str) -> Dict[str, int]:
    for model in server_config.model_config_list.config:
        if model.name == model_name:
            return dict(model.version_labels)
    return {}

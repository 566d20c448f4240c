"""The Pusher, made idempotent: a model already being served is not pushed twice.

Why: whenever the Evaluator runs again on a model that is already served, TFX's
Pusher would copy it to a new timestamped version: the serving directory would
fill with identical versions and "roll back to the previous version" would roll
back to the same model. Locally, an unchanged re-run is served from the cache
(pipeline/components/baseline_resolver.py), but on Kubeflow Pipelines v2 the
baseline resolver is TFX's own, which makes the cached candidate its own baseline
and runs the Evaluator again; a model retrained to the same weights does the same
anywhere. TFX has no option for this, so the check lives in the Pusher's executor.
"""

import hashlib
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components import Pusher
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

ALREADY_SERVING_KEY = "already_serving"


def model_fingerprint(model_dir: str) -> Optional[str]:
    """A content hash of a SavedModel's graph and variables (None if it is not one).

    Through `fileio`, so that it works where the serving directory is on gs://.
    """
    graph = os.path.join(model_dir, "saved_model.pb")
    if not fileio.exists(graph) or fileio.isdir(graph):
        return None
    digest = hashlib.sha256()
    paths = [graph]
    variables = os.path.join(model_dir, "variables")
    if fileio.isdir(variables):
        paths += sorted(os.path.join(variables, name.rstrip("/")) for name in fileio.listdir(variables))
    for path in paths:
        digest.update(os.path.basename(path).encode())
        with fileio.open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def find_serving_version(base_directory: str, model_dir: str) -> Optional[str]:
    """The version under `base_directory` holding the same model as `model_dir`, if any."""
    if not fileio.isdir(base_directory):
        return None
    wanted = model_fingerprint(model_dir)
    if wanted is None:
        return None
    names = (name.rstrip("/") for name in fileio.listdir(base_directory))
    for version in sorted((v for v in names if v.isdigit()), key=int, reverse=True):
        if model_fingerprint(os.path.join(base_directory, version)) == wanted:
            return version
    return None


class DeduplicatingPusherExecutor(pusher_executor.Executor):
    """TFX's filesystem Pusher, except that it does not re-push a model already served."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") == "filesystem" and self.CheckBlessing(input_dict):
            base_directory = destination.filesystem.base_directory
            version = find_serving_version(base_directory, self.GetModelPath(input_dict))
            if version is not None:
                model_push = artifact_utils.get_single_instance(
                    output_dict[standard_component_specs.PUSHED_MODEL_KEY])
                logging.info("The blessed model is already served as version %s; not pushing it "
                             "again.", version)
                self._MarkPushed(model_push, os.path.join(base_directory, version), version)
                model_push.set_int_custom_property(ALREADY_SERVING_KEY, 1)
                return
        super().Do(input_dict, output_dict, exec_properties)


class ServingPusher(Pusher):
    """Pusher with `DeduplicatingPusherExecutor`; same inputs, outputs and properties."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(DeduplicatingPusherExecutor)

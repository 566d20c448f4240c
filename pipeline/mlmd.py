"""ML Metadata access for the template: the connection config, and reading a run back.

The pipeline, the run summary and the run history all read the store through
this module, so they agree on where it is and how runs are found.
"""

import dataclasses
from typing import Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.config import PipelineConfig

PIPELINE_CONTEXT = "pipeline"
RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"


def connection_config(config: PipelineConfig) -> metadata_store_pb2.ConnectionConfig:
    """Where ML Metadata lives for `config`: SQLite (default) or MySQL/MariaDB."""
    connection = metadata_store_pb2.ConnectionConfig()
    if config.metadata.backend == "mysql":
        connection.mysql.host = config.metadata.host
        connection.mysql.port = config.metadata.port
        connection.mysql.database = config.metadata.database
        connection.mysql.user = config.metadata.user
        connection.mysql.password = config.metadata.password
        return connection
    connection.sqlite.filename_uri = config.metadata_path
    connection.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    return connection


def open_store(config: PipelineConfig) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(connection_config(config))


@dataclasses.dataclass
class NodeExecution:
    """One component's execution within a pipeline run."""

    node_id: str
    state: str  # COMPLETE, CACHED, FAILED, RUNNING, ...
    seconds: float
    execution: metadata_store_pb2.Execution
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]


def run_ids(store: metadata_store.MetadataStore, pipeline_name: str) -> List[str]:
    """Run ids of `pipeline_name`, oldest first."""
    pipeline_context = store.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline_name)
    if pipeline_context is None:
        return []
    pipeline_executions = {e.id for e in store.get_executions_by_context(pipeline_context.id)}
    runs = []
    for context in store.get_contexts_by_type(RUN_CONTEXT):
        executions = store.get_executions_by_context(context.id)
        if any(e.id in pipeline_executions for e in executions):
            runs.append((context.create_time_since_epoch, context.name))
    return [name for _, name in sorted(runs)]


def run_executions(store: metadata_store.MetadataStore, pipeline_name: str,
                   run_id: Optional[str] = None) -> List[NodeExecution]:
    """The executions of one run (the latest by default), in the order they started."""
    if run_id is None:
        ids = run_ids(store, pipeline_name)
        if not ids:
            return []
        run_id = ids[-1]
    run_context = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    if run_context is None:
        return []
    executions = sorted(store.get_executions_by_context(run_context.id),
                        key=lambda e: (e.create_time_since_epoch, e.id))
    result = []
    for execution in executions:
        node_id = execution_node_id(store, execution, pipeline_name)
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        result.append(NodeExecution(node_id, state, seconds, execution, _outputs(store, execution)))
    return result


def execution_node_id(store, execution, pipeline_name: str) -> str:
    """The node id (component id) an execution ran; its type name if it has no node context."""
    prefix = pipeline_name + "."
    for context in store.get_contexts_by_execution(execution.id):
        if context.name.startswith(prefix) and store.get_context_types_by_id(
                [context.type_id])[0].name == NODE_CONTEXT:
            return context.name[len(prefix):]
    return store.get_execution_types_by_id([execution.type_id])[0].name


def _outputs(store, execution) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    return artifacts_by_key(store, execution, (metadata_store_pb2.Event.OUTPUT,
                                               metadata_store_pb2.Event.DECLARED_OUTPUT))


def artifacts_by_key(store, execution, event_types) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    """Input or output key -> the artifacts `execution` read or wrote under it."""
    events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type in event_types]
    if not events:
        return {}
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    by_key: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        # MLMD keeps one event per (artifact, execution, type). An artifact read under two
        # keys (the Evaluator's model that is also its baseline) gets one event whose path
        # holds a (key, index) step pair per key: see tfx's event_lib.add_event_path.
        keys = [step.key for step in event.path.steps if step.HasField("key")] or [""]
        for key in keys:
            by_key.setdefault(key, []).append(artifacts[event.artifact_id])
    return by_key

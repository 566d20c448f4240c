"""The `RunRecord` component: writes a run's config, config hash and data spans into ML Metadata.

TFX records each component's own parameters, but nothing records the pipeline
config as a whole or which spans a run read (CsvExampleGen's `span` property
is 0 when the input pattern has no {SPAN}). `RunRecord` runs first in every run
(`create_pipeline` adds it); its execution properties are the record, stored
on its execution in the run's `pipeline_run` context. When the config is
unchanged the execution is CACHED, and TFX copies the properties onto the
cached execution, so every run still carries its record.

`pipeline.ops.tracking` reads it back (`tfxt runs list/show/rerun`).
"""

import json

from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component

from pipeline.config import PipelineConfig, available_spans

NODE_ID = "RunRecord"
# Replaces the metadata password in the recorded config.
REDACTED = "<redacted>"


@component
def RunRecord(config: Parameter[str], config_fingerprint: Parameter[str],  # noqa: N802 - a component
              spans: Parameter[str]) -> None:
    """Holds the run's record in its execution properties; checks it is readable JSON."""
    json.loads(config)
    json.loads(spans)


def recorded_config(config: PipelineConfig) -> dict:
    """The config as recorded: everything but the metadata store's password."""
    values = config.to_dict()
    if values["metadata"]["password"]:
        values["metadata"]["password"] = REDACTED
    return values


def resolved_spans(config: PipelineConfig) -> list:
    """The spans the run reads: the configured ones, or every span present under data_root.

    For a remote data_root with no spans configured the list is empty ("all").
    """
    if config.spans:
        return sorted(set(config.spans))
    return list(available_spans(config.data_root)) if "://" not in config.data_root else []


def make_run_record(config: PipelineConfig):
    """The RunRecord node for `config` (node id `RunRecord`)."""
    return RunRecord(
        config=json.dumps(recorded_config(config), sort_keys=True),
        config_fingerprint=config.fingerprint(),
        spans=json.dumps(resolved_spans(config)),
    ).with_id(NODE_ID)


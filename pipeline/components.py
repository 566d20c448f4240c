"""Custom TFX components of the template, each where TFX has no component that does the job.

`AnomaliesGate` exists because TFX's ExampleValidator only records anomalies:
nothing downstream stops on them. Transform depends on this gate, so data that
breaks the curated schema stops the run before Transform and Trainer, the
Pusher never runs, and the previously pushed model stays as it is.
"""

from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.components.base import base_component
from tfx.types import Channel
from tfx.types.component_spec import ExecutionParameter
from tfx.types.standard_artifacts import ExampleAnomalies, Schema
from tfx.types.standard_component_specs import ImportSchemaGenSpec

from pipeline.anomalies import format_anomalies, read_anomalies


class DataValidationError(RuntimeError):
    """The input data does not match the curated schema."""


@component
def AnomaliesGate(anomalies: InputArtifact[ExampleAnomalies]) -> None:  # noqa: N802 - a component name
    """Fails the run, naming each column, when ExampleValidator found anomalies."""
    found = read_anomalies(anomalies.uri)
    if found:
        raise DataValidationError(
            "Data validation failed: the input data does not match schema/schema.pbtxt, so the run "
            "stops before training and the pushed model is unchanged.\n"
            + format_anomalies(found)
            + "\nFix the data, or, if the change is intended, update the schema "
            "(`tfxt schema refresh`) and review it.")


class _FingerprintedImportSchemaGenSpec(ImportSchemaGenSpec):
    PARAMETERS = {**ImportSchemaGenSpec.PARAMETERS,
                  "schema_fingerprint": ExecutionParameter(type=str)}


class FingerprintedImportSchemaGen(ImportSchemaGen):
    """TFX's ImportSchemaGen, re-run whenever the schema file's content changes.

    TFX caches ImportSchemaGen on its `schema_file` path alone, so an edited
    schema would silently be replaced by the cached copy of the old one. The
    extra `schema_fingerprint` property (a hash of the file, computed by
    `load_config`) makes the cache key follow the content; the executor is
    TFX's own and ignores it.
    """

    SPEC_CLASS = _FingerprintedImportSchemaGenSpec

    def __init__(self, schema_file: str, schema_fingerprint: str):
        spec = _FingerprintedImportSchemaGenSpec(
            schema_file=schema_file,
            schema_fingerprint=schema_fingerprint,
            schema=Channel(type=Schema))
        base_component.BaseComponent.__init__(self, spec=spec)

"""`FingerprintedImportSchemaGen`: TFX's ImportSchemaGen, re-run whenever the schema file changes."""

from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import base_component
from tfx.types import Channel
from tfx.types.component_spec import ExecutionParameter
from tfx.types.standard_artifacts import Schema
from tfx.types.standard_component_specs import ImportSchemaGenSpec


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

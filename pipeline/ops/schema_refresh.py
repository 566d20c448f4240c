"""Refreshing the curated schema from SchemaGen's latest inference.

`refresh_schema` is what `tfxt schema refresh` runs after pointing the template
at new data: features SchemaGen found that the curated schema lacks are added
as inferred, features no longer in the data are dropped, and curated entries
(domains, presence constraints) of features still present are kept. The label
is marked as absent in the SERVING environment. Categorical columns and the label
(models/features.py) are typed BYTES even when their values are numbers (an hour
of day, a 0/1 class), which SchemaGen infers as INT: Transform builds vocabularies
of text, and the gate would stop the next run on them otherwise.
"""

import os
from typing import List, Sequence

from pipeline.config import PipelineConfig

HEADER = """\
# Curated schema (tensorflow_metadata Schema, text format).
# ExampleValidator checks every span against it and Transform parses with it.
# Written by `tfxt schema refresh` from SchemaGen's inference, keeping curated
# entries; review the diff and tighten domains and presence constraints.
"""


# Said whenever no inference can be found: the usual cause is running with another config.
_SAME_CONFIG = ("run the pipeline on the new data first (it stops at validation, after SchemaGen), "
                "then refresh with the same config (--config FILE or TFXT_CONFIG).")


def latest_inferred_schema_uri(config: PipelineConfig) -> str:
    """URI of the newest SchemaGen output recorded in ML Metadata for `config`'s data.

    Only runs that read `config.data_root` count (their RunRecord says so), so a refresh with
    the wrong config cannot silently take another data set's schema.

    Raises:
      LookupError: no such run; the message names the pipeline, data and what to do.
    """
    from pipeline.ops import tracking

    where = f"pipeline '{config.pipeline_name}' on {config.data_root}"
    try:
        runs = tracking.list_runs(config, read_metrics=False)
    except tracking.TrackingError as e:
        raise LookupError(f"{e} ({_SAME_CONFIG})") from None
    if not runs:
        raise LookupError(f"No runs of {where} in {_store_name(config)}: {_SAME_CONFIG}")
    for run in reversed(runs):
        if run.config is not None and run.config.get("data_root") != config.data_root:
            continue
        node = run.node("SchemaGen")
        if node is not None and node.outputs.get("schema"):
            return node.outputs["schema"][0].uri
    raise LookupError(f"No SchemaGen output of {where} in {_store_name(config)}: {_SAME_CONFIG}")


def _store_name(config: PipelineConfig) -> str:
    if config.metadata.backend == "sqlite":
        return config.metadata_path
    return f"mysql://{config.metadata.host}:{config.metadata.port}/{config.metadata.database}"


def refresh_schema(config: PipelineConfig) -> List[str]:
    """Merges SchemaGen's latest schema into `config.schema_path`; returns what changed."""
    from tensorflow_data_validation.utils import schema_util
    from tensorflow_metadata.proto.v0 import schema_pb2

    from models import features

    inferred = schema_util.load_schema_text(
        os.path.join(latest_inferred_schema_uri(config), "schema.pbtxt"))
    curated = (schema_util.load_schema_text(config.schema_path)
               if os.path.exists(config.schema_path) else schema_pb2.Schema())
    merged, changes = merge_schemas(curated, inferred, features.LABEL_KEY,
                                    features.CATEGORICAL_FEATURE_KEYS, features.PASSTHROUGH_KEYS)
    changes += int_keys_hint(merged, features.NUMERIC_FEATURE_KEYS, features.INT_FEATURE_KEYS)
    from google.protobuf import text_format

    os.makedirs(os.path.dirname(config.schema_path), exist_ok=True)
    tmp = config.schema_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(HEADER + text_format.MessageToString(merged))
    os.replace(tmp, config.schema_path)
    return changes


def merge_schemas(curated, inferred, label_key: str, categorical_keys: Sequence[str] = (),
                  passthrough_keys: Sequence[str] = ()):
    """(merged schema, change lines): curated features kept, others as inferred, text columns BYTES.

    A new passthrough column (kept, not a model input: a note, an id) gets no domain. SchemaGen
    lists the few values of a small sample as a string domain, and the gate would then stop the
    next span over a note it has not seen, although the model never reads it.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    curated_features = {f.name: f for f in curated.feature}
    inferred_names = [f.name for f in inferred.feature]
    merged = schema_pb2.Schema()
    changes = []
    domains_needed = set()
    text_columns = set(categorical_keys) | {label_key}
    for inferred_feature in inferred.feature:
        feature = schema_pb2.Feature()
        feature.CopyFrom(inferred_feature)
        if feature.name in text_columns and feature.type != schema_pb2.BYTES:
            kind = "the label is" if feature.name == label_key else "categorical columns are"
            retyped = (f"typed BYTES    {feature.name} (SchemaGen inferred "
                       f"{schema_pb2.FeatureType.Name(feature.type)}; {kind} text)")
            _as_text(feature)
        else:
            retyped = ""
        if feature.name in passthrough_keys and feature.WhichOneof("domain_info") is not None:
            feature.ClearField("domain_info")
            retyped = f"added          {feature.name} (passed through, not a model input: any value)"
        source = curated_features.get(feature.name)
        if source is not None and source.type == feature.type:
            merged.feature.add().CopyFrom(source)
            changes.append(f"kept curated   {feature.name}")
        else:
            merged.feature.add().CopyFrom(feature)
            changes.append(retyped or f"{'retyped' if source is not None else 'added':<14} {feature.name}")
        if merged.feature[-1].HasField("domain"):
            domains_needed.add(merged.feature[-1].domain)
    for name in curated_features:
        if name not in inferred_names:
            changes.append(f"removed        {name}")
    domains = {d.name: d for d in inferred.string_domain}
    domains.update({d.name: d for d in curated.string_domain})
    for name in sorted(domains_needed):
        if name in domains:
            merged.string_domain.add().CopyFrom(domains[name])
    merged.default_environment[:] = ["TRAINING", "SERVING"]
    for feature in merged.feature:
        if feature.name == label_key and "SERVING" not in feature.not_in_environment:
            feature.not_in_environment.append("SERVING")
    if label_key not in inferred_names:
        changes.append(f"warning: the label '{label_key}' (models/features.py) is not in the data")
    return merged, changes


def _as_text(feature) -> None:
    """Retypes a schema feature as BYTES; a domain inferred for numbers no longer applies to text.

    SchemaGen gives a 0/1 column a `bool_domain`, which for BYTES would accept only "true" and
    "false"; an hour gets an `int_domain`. Only a string domain (named or inline) is kept.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    feature.type = schema_pb2.BYTES
    if feature.WhichOneof("domain_info") not in (None, "domain", "string_domain"):
        feature.ClearField("domain_info")


def int_keys_hint(schema, numeric_keys: Sequence[str], int_keys: Sequence[str]) -> List[str]:
    """A line asking to edit INT_FEATURE_KEYS when it disagrees with the schema's INT numerics.

    Clients type values by INT_FEATURE_KEYS, and the run's gate stops on a disagreement.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    types = {f.name: f.type for f in schema.feature}
    wanted = tuple(k for k in numeric_keys if types.get(k) == schema_pb2.INT)
    if set(wanted) == {k for k in int_keys if k in types and k in numeric_keys}:
        return []
    return [f"edit models/features.py: INT_FEATURE_KEYS = {wanted!r} (the numeric columns the schema "
            "types INT; clients send them as whole numbers)"]

"""The AnomaliesGate's own checks (`pipeline.components.anomalies_gate`) on statistics and schema protos.

The pipeline runs that exercise them end to end are in `tests/test_data_faults.py`.
"""

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from models import features
from pipeline.components import anomalies_gate
from tests.conftest import SCHEMA_PATH

SCHEMA = """
feature { name: "weight" type: FLOAT value_count { min: 0 max: 1 } }
feature { name: "colour" type: BYTES value_count { min: 0 max: 1 } }
feature { name: "kind" type: BYTES value_count { min: 1 max: 1 } }
feature { name: "hour" type: INT value_count { min: 1 max: 1 } }
"""


def _stats(examples, values):
    """One split's statistics: `examples` rows, and column -> how many hold a value (or are absent)."""
    stats = statistics_pb2.DatasetFeatureStatistics(num_examples=examples)
    for name, count in values.items():
        feature = stats.features.add()
        feature.path.step.append(name)
        common = (feature.string_stats if name in ("colour", "kind") else feature.num_stats).common_stats
        common.num_non_missing = examples
        common.tot_num_values = count
        common.max_num_values = 1
    return stats


@pytest.fixture
def schema():
    return text_format.Parse(SCHEMA, schema_pb2.Schema())


def test_blank_fraction_is_checked_per_split_against_each_columns_tolerance(schema):
    statistics = {"train": _stats(100, {"weight": 85, "colour": 95, "kind": 90}),
                  "eval": _stats(40, {"weight": 39, "colour": 30, "kind": 40})}
    found = anomalies_gate.blank_problems(statistics, schema, 0.1, {"colour": 0.3})
    assert [(a.split, a.column) for a in found] == [("train", "weight")]
    assert "15 of 100 examples (15%) are blank" in found[0].description
    assert "validation.max_blank_fraction (10%)" in found[0].description
    # `kind` is required (value_count min 1): ExampleValidator reports it, not this check.
    stricter = anomalies_gate.blank_problems(statistics, schema, 0.1, {"colour": 0.2})
    [colour] = [a for a in stricter if a.column == "colour"]
    assert colour.split == "eval" and "validation.blank_fractions.colour (20%)" in colour.description


def test_a_split_below_the_minimum_row_count_is_named(schema):
    found = anomalies_gate.count_problems({"train": _stats(25, {}), "eval": _stats(3, {})}, 20)
    assert [(a.split, a.column) for a in found] == [("eval", "<dataset>")]
    assert "3 examples, fewer than validation.min_examples_per_split (20)" in found[0].description


def test_a_categorical_column_that_the_schema_does_not_type_as_text_is_named(schema):
    found = anomalies_gate.type_problems(schema, ["colour", "hour"])
    assert [a.column for a in found] == ["hour"]
    assert "types it INT" in found[0].description and "BYTES" in found[0].description
    line = anomalies_gate.format_anomalies(found)
    assert line.startswith("  column 'hour': categorical") and "\n" not in line


def test_a_label_the_schema_types_as_a_number_is_named_as_the_label(schema):
    # A 0/1 class column: SchemaGen infers INT, but Transform's label vocabulary needs text.
    [found] = anomalies_gate.type_problems(schema, ["colour", "hour"], label_key="hour")
    assert found.column == "hour" and found.description.startswith("the label in models/features.py")
    assert "NUMERIC_FEATURE_KEYS" not in found.description


def test_schema_refresh_types_categoricals_and_the_label_as_text():
    """SchemaGen infers INT for numbers; refresh retypes categoricals and the label, drops their domains."""
    from pipeline.ops.schema_refresh import merge_schemas

    inferred = text_format.Parse("""
        feature { name: "weight" type: FLOAT value_count { min: 1 max: 1 } }
        feature { name: "hour" type: INT int_domain { min: 0 max: 23 } value_count { min: 1 max: 1 } }
        feature { name: "tipped" type: INT bool_domain { } value_count { min: 1 max: 1 } }
        feature { name: "colour" type: BYTES domain: "colour" value_count { min: 1 max: 1 } }
        string_domain { name: "colour" value: "red" value: "blue" }
        """, schema_pb2.Schema())
    merged, changes = merge_schemas(schema_pb2.Schema(), inferred, "tipped", ("hour", "colour"))
    types = {f.name: schema_pb2.FeatureType.Name(f.type) for f in merged.feature}
    assert types == {"weight": "FLOAT", "hour": "BYTES", "tipped": "BYTES", "colour": "BYTES"}
    hour, tipped = (next(f for f in merged.feature if f.name == n) for n in ("hour", "tipped"))
    # A bool_domain (SchemaGen's guess for 0/1) on text would accept only "true" and "false".
    assert hour.WhichOneof("domain_info") is None and tipped.WhichOneof("domain_info") is None
    assert [line for line in changes if line.startswith("typed BYTES")] == [
        "typed BYTES    hour (SchemaGen inferred INT; categorical columns are text)",
        "typed BYTES    tipped (SchemaGen inferred INT; the label is text)"]
    # The gate then finds nothing to refuse, and a second refresh keeps the curated text types.
    assert anomalies_gate.type_problems(merged, ["hour", "colour", "tipped"], "tipped") == []
    again, changes = merge_schemas(merged, inferred, "tipped", ("hour", "colour"))
    assert again == merged and all(line.startswith("kept curated") for line in changes)


def test_schema_refresh_leaves_passthrough_columns_without_a_domain():
    """A free-text column the model does not read must not stop the next span over a new value."""
    from pipeline.ops.schema_refresh import merge_schemas

    inferred = text_format.Parse("""
        feature { name: "notes" type: BYTES domain: "notes" value_count { min: 0 max: 1 } }
        feature { name: "colour" type: BYTES domain: "colour" value_count { min: 1 max: 1 } }
        feature { name: "tipped" type: BYTES domain: "tipped" value_count { min: 1 max: 1 } }
        string_domain { name: "notes" value: "n/a" value: "repeat customer" }
        string_domain { name: "colour" value: "red" value: "blue" }
        string_domain { name: "tipped" value: "no" value: "yes" }
        """, schema_pb2.Schema())
    merged, changes = merge_schemas(schema_pb2.Schema(), inferred, "tipped", ("colour",), ("notes",))
    notes = next(f for f in merged.feature if f.name == "notes")
    assert notes.WhichOneof("domain_info") is None and notes.type == schema_pb2.BYTES
    assert sorted(d.name for d in merged.string_domain) == ["colour", "tipped"]
    assert "added          notes (passed through, not a model input: any value)" in changes
    # A curated passthrough entry with a domain someone wrote on purpose is kept.
    curated = text_format.Parse(text_format.MessageToString(inferred), schema_pb2.Schema())
    kept, _ = merge_schemas(curated, inferred, "tipped", ("colour",), ("notes",))
    assert next(f for f in kept.feature if f.name == "notes").domain == "notes"


def test_a_numeric_column_typed_other_than_int_feature_keys_says_is_named(schema):
    # weight is FLOAT, hour INT in SCHEMA; clients type values by INT_FEATURE_KEYS.
    found = anomalies_gate.int_problems(schema, ["weight", "hour"], ["weight"])
    assert [a.column for a in found] == ["weight", "hour"]
    assert "remove it from INT_FEATURE_KEYS" in found[0].description
    assert "add it there" in found[1].description
    assert anomalies_gate.int_problems(schema, ["weight", "hour"], ["hour", "gone"]) == []


def test_schema_refresh_says_how_to_set_int_feature_keys():
    from pipeline.ops.schema_refresh import int_keys_hint

    schema = text_format.Parse(SCHEMA, schema_pb2.Schema())
    [line] = int_keys_hint(schema, ("weight", "hour"), ("flipper_length_mm",))
    assert line.startswith("edit models/features.py: INT_FEATURE_KEYS = ('hour',)")
    assert int_keys_hint(schema, ("weight", "hour"), ("hour",)) == []


def test_the_bundled_schema_agrees_with_int_feature_keys():
    with open(SCHEMA_PATH) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    assert anomalies_gate.int_problems(
        schema, list(features.NUMERIC_FEATURE_KEYS), list(features.INT_FEATURE_KEYS)) == []


def test_the_bundled_schema_types_every_categorical_as_text():
    with open(SCHEMA_PATH) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    assert anomalies_gate.type_problems(schema, list(features.CATEGORICAL_FEATURE_KEYS)) == []


def test_tfdv_reports_a_blank_required_column_on_csv_input(tmp_path):
    """Required columns (`value_count { min: 1 }` or a shape) need no tolerance check of ours."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    from pipeline.components import example_gen

    header = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"
    rows = ["Adelie,Torgersen,39.1,18.7,181,3750,male,2007", ",,39.5,17.4,186,3800,female,"]
    path = tmp_path / "blank.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    records = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        for record in example_gen.read_examples(str(path), example_gen.load_schema_types(SCHEMA_PATH)):
            writer.write(record)
    stats = tfdv.generate_statistics_from_tfrecord(records, pipeline_options=None)
    anomalies = tfdv.validate_statistics(stats, tfdv.load_schema_text(SCHEMA_PATH))
    assert {"species", "island", "year"} <= set(anomalies.anomaly_info)
    assert "sex" not in anomalies.anomaly_info  # may be blank: the gate's tolerance decides

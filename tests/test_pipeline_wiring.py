"""The pipeline's components and their wiring, without running anything."""

import json

import pytest
import tensorflow_model_analysis as tfma
from tfx.proto import pusher_pb2

from models import features
from pipeline.config import load_config
from pipeline.pipeline import create_pipeline, eval_config
from tests.conftest import DATA_ROOT, SCHEMA_PATH

CANONICAL_ORDER = [
    "CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator",
    "AnomaliesGate", "Transform", "Trainer", "latest_blessed_model_resolver", "Evaluator", "Pusher",
]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return load_config(overrides={"data_root": DATA_ROOT, "schema_path": SCHEMA_PATH,
                                  "output_dir": str(tmp_path_factory.mktemp("wiring")),
                                  "hyperparameters": {"train_steps": 11, "hidden_units": [5, 3]}})


@pytest.fixture(scope="module")
def components(config):
    return {c.id: c for c in create_pipeline(config).components}


def _producer(channel):
    return channel.producer_component_id


def test_every_canonical_component_is_present(components):
    assert set(CANONICAL_ORDER) <= set(components)


def test_components_are_topologically_ordered(config):
    ids = [c.id for c in create_pipeline(config).components]
    for component in create_pipeline(config).components:
        for upstream in component.upstream_nodes:
            assert ids.index(upstream.id) < ids.index(component.id), (upstream.id, component.id)


def test_data_flows_through_validation_and_the_curated_schema(components):
    validator, transform = components["ExampleValidator"], components["Transform"]
    assert _producer(validator.inputs["statistics"]) == "StatisticsGen"
    assert _producer(validator.inputs["schema"]) == "ImportSchemaGen"
    assert _producer(transform.inputs["schema"]) == "ImportSchemaGen"
    assert _producer(components["SchemaGen"].inputs["statistics"]) == "StatisticsGen"
    # Transform (hence Trainer and Pusher) waits for the anomalies gate.
    assert "AnomaliesGate" in {c.id for c in transform.upstream_nodes}
    # SchemaGen always runs before the gate can stop a run (schema refresh needs it).
    assert "SchemaGen" in {c.id for c in components["AnomaliesGate"].upstream_nodes}
    assert _producer(components["AnomaliesGate"].inputs["anomalies"]) == "ExampleValidator"


def test_trainer_evaluator_and_pusher_are_chained_by_blessing(components):
    trainer, evaluator, pusher = components["Trainer"], components["Evaluator"], components["Pusher"]
    assert _producer(trainer.inputs["examples"]) == "Transform"
    assert _producer(trainer.inputs["transform_graph"]) == "Transform"
    assert _producer(evaluator.inputs["model"]) == "Trainer"
    assert _producer(evaluator.inputs["baseline_model"]) == "latest_blessed_model_resolver"
    assert _producer(evaluator.inputs["examples"]) == "CsvExampleGen"
    assert _producer(pusher.inputs["model"]) == "ServingModel"
    assert _producer(components["ServingModel"].inputs["model"]) == "Trainer"
    assert _producer(pusher.inputs["model_blessing"]) == "Evaluator"


def test_config_reaches_the_components(config, components):
    trainer = components["Trainer"]
    assert trainer.exec_properties["run_fn"] == config.run_fn
    assert '"num_steps": 11' in trainer.exec_properties["train_args"]
    assert '"hidden_units": [5, 3]' in trainer.exec_properties["custom_config"]
    assert components["Transform"].exec_properties["preprocessing_fn"] == config.preprocessing_fn
    assert components["ImportSchemaGen"].exec_properties["schema_file"] == SCHEMA_PATH
    destination = pusher_pb2.PushDestination()
    from tfx.utils import proto_utils

    proto_utils.json_to_proto(components["Pusher"].exec_properties["push_destination"], destination)
    assert destination.filesystem.base_directory == config.serving_model_dir


def test_pipeline_level_settings(config):
    pipeline = create_pipeline(config)
    assert pipeline.pipeline_info.pipeline_name == config.pipeline_name
    assert pipeline.enable_cache is True
    from pipeline.orchestration import beam_pipeline_args

    assert pipeline.beam_pipeline_args == beam_pipeline_args(config)
    assert "--direct_running_mode=in_memory" in pipeline.beam_pipeline_args


def test_eval_config_slices_and_gates_derive_from_features(config):
    evaluation = eval_config(config)
    assert evaluation.model_specs[0].label_key == features.transformed_name(features.LABEL_KEY)
    sliced = [list(s.feature_keys) for s in evaluation.slicing_specs]
    assert sliced == [[]] + [[k] for k in features.SLICE_KEYS]
    accuracy = next(m for m in evaluation.metrics_specs[0].metrics
                    if m.class_name == "SparseCategoricalAccuracy")
    # Both gates hold for the Overall slice only (tests/test_gates.py checks TFMA's verdicts).
    assert not accuracy.HasField("threshold")
    (overall,) = accuracy.per_slice_thresholds
    assert list(overall.slicing_specs) == [tfma.SlicingSpec()]
    assert overall.threshold.value_threshold.lower_bound.value == config.thresholds.min_accuracy
    assert overall.threshold.change_threshold.absolute.value == -config.thresholds.max_accuracy_drop
    # Per-class precision and recall for every label class (ClassPrecisionRecall, by module path).
    (per_class,) = evaluation.metrics_specs[1].metrics
    assert (per_class.module, per_class.class_name) == ("pipeline.components.class_metrics",
                                                        "ClassPrecisionRecall")
    assert json.loads(per_class.config)["class_ids"] == list(range(len(features.LABEL_CLASSES)))


def test_pipeline_is_a_pure_function_of_the_config(config):
    first, second = create_pipeline(config), create_pipeline(config)
    assert [c.id for c in first.components] == [c.id for c in second.components]
    assert ({c.id: c.exec_properties for c in first.components}
            == {c.id: c.exec_properties for c in second.components})


def test_example_gen_reads_the_span_files_in_sorted_order(config, components, monkeypatch, tmp_path):
    """tf.io.gfile.glob's order varies from run to run; ExampleGen must not pass it on to training."""
    import os

    import apache_beam as beam
    import tensorflow as tf
    from tfx.dsl.io import fileio

    from pipeline.components import example_gen
    from pipeline.orchestration import beam_pipeline_args

    assert components["CsvExampleGen"].executor_spec.executor_class is example_gen.Executor
    assert len(fileio.glob(os.path.join(DATA_ROOT, "span-*", "*.csv"))) == 3
    # The worst order the glob could return: reverse-sorted. TFX's own source reads 2009 first.
    unpatched_glob = fileio.glob
    monkeypatch.setattr(fileio, "glob", lambda pattern: sorted(unpatched_glob(pattern), reverse=True))
    source = example_gen.Executor().GetInputSourceToExamplePTransform()
    properties = {"input_base": DATA_ROOT,
                  "custom_config": components["CsvExampleGen"].exec_properties["custom_config"]}
    out = tmp_path / "years.txt"
    with beam.Pipeline(argv=beam_pipeline_args(config)) as p:  # the runner ExampleGen gets
        _ = (p
             | source(properties, "span-*/*.csv")
             | beam.Map(lambda record: str(
                 tf.train.Example.FromString(record).features.feature["year"].int64_list.value[0]))
             | beam.io.WriteToText(str(out), num_shards=1, shard_name_template=""))
    years = out.read_text().split()
    assert len(years) == 344
    assert years == sorted(years)  # every 2007 row, then 2008, then 2009: file by file, in order


@pytest.mark.parametrize("transform_statistics", [False, True])
def test_transform_statistics_follow_the_config(config, transform_statistics):
    """Off by default: StatisticsGen already covers the raw data, and nothing reads Transform's."""
    import dataclasses

    pipeline = create_pipeline(dataclasses.replace(config, transform_statistics=transform_statistics))
    transform = next(c for c in pipeline.components if c.id == "Transform")
    assert bool(transform.exec_properties["disable_statistics"]) is not transform_statistics
    assert load_config(overrides={"data_root": DATA_ROOT}).transform_statistics is False


def test_transform_writes_no_analyzer_cache_that_nothing_reads(components):
    """TFX's Transform leaves out its cache output when the cache is disabled."""
    transform = components["Transform"]
    assert "updated_analyzer_cache" not in transform.outputs and "analyzer_cache" not in transform.inputs


def test_baseline_is_resolved_for_the_candidate_and_the_served_model_before_training(components):
    """The Evaluator's baseline resolver sees the Trainer's model (pipeline/components/baseline_resolver.py);
    ModelDecay, which runs before Transform, gets TFX's latest blessed model from its own resolver."""
    baseline = components["latest_blessed_model_resolver"]
    assert _producer(baseline.raw_inputs["candidate"]) == "Trainer"
    if "ModelDecay" in components:
        assert _producer(components["ModelDecay"].inputs["model"]) == "served_model_resolver"
        assert "Trainer" not in {c.id for c in components["served_model_resolver"].upstream_nodes}


@pytest.mark.parametrize("name", ["Sepal.Length", "Color Code", "petal-width", "2nd_reading"])
def test_a_column_name_the_signatures_would_rename_stops_the_run_in_one_line(config, monkeypatch, name):
    """A serving signature names inputs by Python identifiers; any other name fails or is renamed."""
    import io

    from pipeline.config import ConfigError
    from pipeline.ops.run import EXIT_CONFIG_ERROR, run_and_report
    from pipeline.training.feature_check import check_feature_names

    with pytest.raises(ConfigError, match=f"column '{name}' cannot name a model input") as raised:
        check_feature_names(("weight", name))
    assert "\n" not in str(raised.value) and "Rename it in the CSV header" in str(raised.value)
    check_feature_names(("weight", "Sepal_Length", "_x2"))  # identifiers pass

    monkeypatch.setattr(features, "NUMERIC_FEATURE_KEYS", features.NUMERIC_FEATURE_KEYS + (name,))
    stream = io.StringIO()
    assert run_and_report(config, lambda: create_pipeline(config), stream) == EXIT_CONFIG_ERROR
    assert f"Config error: models/features.py: column '{name}'" in stream.getvalue()
    assert "Traceback" not in stream.getvalue()

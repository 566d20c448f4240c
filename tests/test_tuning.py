"""The optional Tuner: its wiring in `create_pipeline`, its search space, and a real small search
whose best hyperparameters the Trainer then trains with."""

import json
import os

import pytest

from models import tuning
from models.trainer import TrainingArgs
from pipeline.config import ConfigError, Hyperparameters
from tests.conftest import DATA_ROOT, SCHEMA_PATH


def config_with(tmp_path, **values):
    from pipeline.config import load_config

    return load_config(overrides={"output_dir": str(tmp_path / "outputs"), "data_root": DATA_ROOT,
                                  "schema_path": SCHEMA_PATH, **values})


def test_tuner_is_off_by_default_and_feeds_the_trainer_when_on(tmp_path):
    from pipeline.pipeline import create_pipeline

    components = {c.id: c for c in create_pipeline(config_with(tmp_path)).components}
    assert "Tuner" not in components
    assert components["Trainer"].inputs.get("hyperparameters") is None

    config = config_with(tmp_path, tuner={"enabled": True, "max_trials": 2, "train_steps": 7})
    components = {c.id: c for c in create_pipeline(config).components}
    tuner, trainer = components["Tuner"], components["Trainer"]
    assert trainer.inputs["hyperparameters"].producer_component_id == "Tuner"
    assert tuner.inputs["transform_graph"].producer_component_id == "Transform"
    assert tuner.exec_properties["tuner_fn"] == "models.tuning.tuner_fn"
    assert json.loads(tuner.exec_properties["custom_config"])["tuner"] == {"max_trials": 2}
    assert json.loads(tuner.exec_properties["train_args"])["num_steps"] == 7


def test_tuner_settings_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="tuner.max_trials must be at least 1"):
        config_with(tmp_path, tuner={"enabled": True, "max_trials": 0})
    with pytest.raises(ConfigError, match="Unknown field.*tuner: trials"):
        config_with(tmp_path, tuner={"trials": 3})


def test_search_space_names_hyperparameters_and_tuned_values_win():
    space = tuning.search_space()
    fields = set(Hyperparameters.__dataclass_fields__)
    assert {hp.name for hp in space.space} <= fields
    custom_config = {"hyperparameters": {"learning_rate": 0.5, "hidden_units": [4], "batch_size": 7},
                     "strategy": "mirrored", "seed": 3}
    args = TrainingArgs.from_custom_config(custom_config, {"learning_rate": 0.003, "hidden_units": "32,16"})
    assert args.hyperparameters.learning_rate == 0.003
    assert args.hyperparameters.hidden_units == (32, 16)
    assert args.hyperparameters.batch_size == 7  # not tuned: the config's value stays
    assert (args.strategy, args.seed) == ("mirrored", 3)


@pytest.mark.e2e
def test_small_search_passes_its_best_hyperparameters_to_the_trainer(pushed_pipeline, tmp_path):
    """Tuner and Trainer on the shared run's Transform output, orchestrated by LocalDagRunner."""
    import tensorflow as tf
    from tfx.components import Trainer
    from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
    from tfx.dsl.components.common.importer import Importer
    from tfx.orchestration import metadata
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.proto import trainer_pb2
    from tfx.types import standard_artifacts

    from models import model as model_lib
    from pipeline.components.tuner import tuner_component
    from pipeline.training import cluster

    # hidden_units (4,) is outside the search space, so the trained model shows which values won.
    config = config_with(tmp_path, hyperparameters={"hidden_units": [4], "train_steps": 20, "eval_steps": 5},
                         tuner={"enabled": True, "max_trials": 2, "train_steps": 15, "eval_steps": 5})
    transform = cluster.transform_outputs(pushed_pipeline.config.pipeline_root)
    examples = Importer(source_uri=transform["transformed_examples"],
                        artifact_type=standard_artifacts.Examples,
                        properties={"split_names": '["train", "eval"]'}).with_id("examples")
    graph = Importer(source_uri=transform["transform_graph"],
                     artifact_type=standard_artifacts.TransformGraph).with_id("transform_graph")
    schema = ImportSchemaGen(schema_file=config.schema_path)
    tuner = tuner_component(config, examples.outputs["result"], graph.outputs["result"],
                            schema.outputs["schema"])
    trainer = Trainer(
        run_fn=config.run_fn, examples=examples.outputs["result"], transform_graph=graph.outputs["result"],
        schema=schema.outputs["schema"], hyperparameters=tuner.outputs["best_hyperparameters"],
        train_args=trainer_pb2.TrainArgs(num_steps=20), eval_args=trainer_pb2.EvalArgs(num_steps=5),
        custom_config={"hyperparameters": {"hidden_units": [4]}, "strategy": "one_device", "seed": 1})
    LocalDagRunner().run(tfx_pipeline.Pipeline(
        pipeline_name="tuning", pipeline_root=str(tmp_path / "root"),
        components=[examples, graph, schema, tuner, trainer],
        metadata_connection_config=metadata.sqlite_metadata_connection_config(str(tmp_path / "m.db"))))

    best_file = tf.io.gfile.glob(str(tmp_path / "root" / "Tuner" / "best_hyperparameters" / "*" / "*.txt"))
    best = json.loads(open(best_file[0]).read())["values"]
    assert best["learning_rate"] in (0.003, 0.01, 0.03) and best["hidden_units"] in ("8", "16,8", "32,16")
    results = tf.io.gfile.glob(str(tmp_path / "root" / "Tuner" / "tuner_results" / "*" / "*.json"))
    assert len(json.loads(open(results[0]).read())) == 2
    served = tf.io.gfile.glob(str(tmp_path / "root" / "Trainer" / "model" / "*" / "Format-Serving"))
    model = tf.keras.models.load_model(served[0])
    hidden = [layer.units for layer in model.get_layer(model_lib.CLASSIFIER_LAYER).layers
              if isinstance(layer, tf.keras.layers.Dense)][:-1]
    assert tuple(hidden) == tuple(int(u) for u in best["hidden_units"].split(","))
    assert os.path.isdir(served[0])

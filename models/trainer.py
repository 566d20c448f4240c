"""The Trainer's entry point, `models.trainer.run_fn`.

`run_fn` is a thin adapter: it turns TFX's `FnArgs` into plain arguments and
calls `train` and `export`, which tests can call without any TFX artifact.
"""

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from models import features
from models import model as model_lib
from pipeline.config import Hyperparameters
from pipeline.training import autograph, distribution, signatures
from pipeline.training import warm_start as warm_start_lib
from pipeline.training.frozen_heap import frozen_heap
from pipeline.training.warm_start import WARM_START_FILE


@dataclasses.dataclass(frozen=True)
class TrainingArgs:
    """What training needs besides data: hyperparameters, strategy, seed."""

    hyperparameters: Hyperparameters
    strategy: str = "one_device"
    seed: int = 42
    deterministic_ops: bool = True

    @classmethod
    def from_custom_config(cls, custom_config: Optional[Mapping[str, Any]],
                           tuned: Optional[Mapping[str, Any]] = None) -> "TrainingArgs":
        """Reads the Trainer's custom_config; `tuned` (the Tuner's best values) wins."""
        custom_config = dict(custom_config or {})
        values = dict(custom_config.get("hyperparameters") or {})
        values.update(tuned or {})
        if isinstance(values.get("hidden_units"), str):  # a Tuner choice such as "32,16"
            values["hidden_units"] = [int(u) for u in values["hidden_units"].split(",") if u]
        if "hidden_units" in values:
            values["hidden_units"] = tuple(values["hidden_units"])
        known = {f.name for f in dataclasses.fields(Hyperparameters)}
        hp = Hyperparameters(**{k: v for k, v in values.items() if k in known})
        return cls(hyperparameters=hp, strategy=custom_config.get("strategy", "one_device"),
                   seed=int(custom_config.get("seed", 42)),
                   deterministic_ops=bool(custom_config.get("deterministic_ops", True)))


def run_fn(fn_args) -> None:
    """TFX Trainer entry point."""
    tuned = fn_args.hyperparameters.get("values") if fn_args.hyperparameters else None
    args = TrainingArgs.from_custom_config(fn_args.custom_config, tuned)
    if distribution.is_server_task(args.strategy):
        # A parameter-server cluster's worker or ps: serve the chief until the job ends.
        distribution.serve_forever()
        return
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)

    def dataset(file_pattern, batch_size):
        return make_dataset(fn_args.data_accessor, file_pattern, tf_transform_output,
                            batch_size, args.seed)

    model, strategy = train(
        args,
        tf_transform_output,
        train_dataset_fn=lambda batch_size: dataset(fn_args.train_files, batch_size),
        eval_dataset_fn=lambda batch_size: dataset(fn_args.eval_files, batch_size),
        train_steps=fn_args.train_steps,
        eval_steps=fn_args.eval_steps,
        log_dir=fn_args.model_run_dir,
        return_strategy=True,
        base_model=fn_args.base_model,
    )
    export_from_task(model, strategy, tf_transform_output, fn_args.serving_model_dir)


def make_dataset(data_accessor, file_pattern, tf_transform_output, batch_size: int, seed: int):
    """Batches of (transformed features, label id) from transformed TFRecords, repeated."""
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size,
            label_key=features.transformed_name(features.LABEL_KEY),
            shuffle_seed=seed,
        ),
        tf_transform_output.transformed_metadata.schema,
    ).repeat()


def model_from_transform_output(tf_transform_output, hyperparameters: Hyperparameters):
    """The model sized by Transform's vocabularies."""
    categorical_sizes = {
        key: tf_transform_output.vocabulary_size_by_name(features.vocabulary_name(key))
        + features.NUM_OOV_BUCKETS
        for key in features.CATEGORICAL_FEATURE_KEYS
    }
    num_classes = tf_transform_output.vocabulary_size_by_name(features.LABEL_VOCABULARY)
    return model_lib.build_model(
        features.NUMERIC_FEATURE_KEYS,
        categorical_sizes,
        num_classes,
        hidden_units=hyperparameters.hidden_units,
        learning_rate=hyperparameters.learning_rate,
        dropout=hyperparameters.dropout,
        steps_per_execution=hyperparameters.steps_per_execution,
    )


def train(args: TrainingArgs, tf_transform_output, train_dataset_fn, eval_dataset_fn,
          train_steps: int, eval_steps: int, log_dir: Optional[str] = None,
          return_strategy: bool = False, base_model: Optional[str] = None):
    """Builds the model under the configured strategy and fits it.

    The global batch size is the per-replica batch size times the number of
    replicas, so adding replicas keeps each replica's work constant. Under
    `parameter_server` each worker reads its own shard through a
    `DatasetCreator` and the coordinator schedules steps on the workers;
    Keras does not validate under that strategy, so it trains without
    `validation_data` (the Evaluator still evaluates the model).

    With a `base_model` (the Trainer's base_model: the latest blessed model), the new model
    starts from its weights when the vocabularies and shapes still match
    (`pipeline.training.warm_start`); what happened is written to `log_dir`/warm_start.json.

    Returns:
      The fitted model, or (model, strategy) with `return_strategy`.
    """
    tf.keras.utils.set_random_seed(args.seed)
    # Otherwise AutoGraph converts tf-keras's own code at the first step (pipeline/training/autograph.py).
    autograph.skip_tf_keras_conversion()
    if args.deterministic_ops and args.strategy != "parameter_server":
        # Process-wide: ops without a deterministic kernel raise instead of varying silently.
        # TensorFlow names ParameterServerStrategy itself as a source of nondeterminism (the
        # coordinator schedules steps on whichever worker is free), so it is left out there.
        tf.config.experimental.enable_op_determinism()
    strategy = distribution.make_strategy(args.strategy)
    global_batch_size = args.hyperparameters.batch_size * strategy.num_replicas_in_sync
    # More steps per execution than there are steps would only be cut back by Keras; clipping
    # here keeps the logged value true.
    hyperparameters = dataclasses.replace(args.hyperparameters, steps_per_execution=min(
        args.hyperparameters.steps_per_execution, train_steps))
    with strategy.scope():
        model = model_from_transform_output(tf_transform_output, hyperparameters)
        # The vocabularies are read only when there is a base model to compare them with.
        started = warm_start_lib.warm_start(
            model, base_model, vocabularies(tf_transform_output) if base_model else {})
        # Adam's slot variables, created now rather than inside the first step: a tf.function
        # that creates variables is traced twice, and tracing was most of the first step
        # (BENCHMARKS.md, "Goal 4: the Trainer's ms/step").
        model.optimizer.build(model.trainable_variables)
    chief = distribution.is_chief(strategy)
    if log_dir and chief:
        write_warm_start(log_dir, started)
    callbacks = [tf.keras.callbacks.TensorBoard(log_dir, update_freq="epoch")] if log_dir and chief else []
    fit_kwargs: Dict[str, Any] = dict(
        steps_per_epoch=train_steps, callbacks=callbacks, verbose=2 if chief else 0)
    if distribution.is_parameter_server(strategy):
        train_data = tf.keras.utils.experimental.DatasetCreator(
            lambda context: train_dataset_fn(context.get_per_replica_batch_size(global_batch_size))
            .shard(context.num_input_pipelines, context.input_pipeline_id))
    else:
        train_data = _shard_by_data(train_dataset_fn(global_batch_size))
        fit_kwargs.update(validation_data=_shard_by_data(eval_dataset_fn(global_batch_size)),
                          validation_steps=eval_steps)
    logging.getLogger(__name__).info(
        "%s: training with %s on %d replica(s), global batch size %d, %d steps, %d per execution",
        distribution.task_name(strategy), args.strategy, strategy.num_replicas_in_sync,
        global_batch_size, train_steps, hyperparameters.steps_per_execution)
    # The objects that exist before fit are not garbage; full collections skip them
    # (pipeline/training/frozen_heap.py).
    with frozen_heap():
        model.fit(train_data, **fit_kwargs)
    return (model, strategy) if return_strategy else model


def vocabularies(tf_transform_output) -> Dict[str, list]:
    """Every vocabulary the model's inputs and outputs depend on, by name."""
    names = [features.vocabulary_name(k) for k in features.CATEGORICAL_FEATURE_KEYS]
    names.append(features.LABEL_VOCABULARY)
    return {name: list(tf_transform_output.vocabulary_by_name(name)) for name in names}


def write_warm_start(log_dir: str, started: "warm_start_lib.WarmStartResult") -> None:
    """Records how training started in the ModelRun artifact (`WARM_START_FILE`)."""
    tf.io.gfile.makedirs(log_dir)
    with tf.io.gfile.GFile(os.path.join(log_dir, WARM_START_FILE), "w") as f:
        f.write(json.dumps(started.to_dict()))


def _shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shards batches across workers rather than files: Transform may write fewer files than workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def export_from_task(model: tf.keras.Model, strategy: tf.distribute.Strategy, tf_transform_output,
                     serving_model_dir: str) -> None:
    """Exports on every task, as multi-worker saving requires; only the chief keeps its copy.

    Other workers write to a local scratch directory that is deleted at once,
    so they never race the chief for the serving model directory.
    """
    if distribution.is_chief(strategy):
        export(model, tf_transform_output, serving_model_dir)
        return
    scratch = tempfile.mkdtemp(prefix=f"tfxt-{distribution.task_name(strategy)}-")
    try:
        export(model, tf_transform_output, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _wait_for_chief_export(serving_model_dir)


def _wait_for_chief_export(serving_model_dir: str, timeout_seconds: float = 600) -> None:
    """Returns once the chief's SavedModel exists (or after the timeout).

    TFX's Trainer executor runs on every replica (Vertex AI starts the same
    command in each worker pool) and fails a replica whose serving model
    directory is missing after `run_fn`; waiting for the chief's export,
    which other workers finish at about the same time, avoids that race.
    """
    deadline = time.monotonic() + timeout_seconds
    marker = os.path.join(serving_model_dir, "saved_model.pb")
    while not tf.io.gfile.exists(marker) and time.monotonic() < deadline:
        time.sleep(1)


def export(model: tf.keras.Model, tf_transform_output, serving_model_dir: str) -> None:
    """Saves the model with all signatures from `pipeline.training.signatures`."""
    model.save(serving_model_dir, save_format="tf",
               signatures=signatures.make_signatures(model, tf_transform_output))

"""The Tuner's search space and `tuner_fn` (TFX Tuner entry point), next to the model they tune.

The pipeline adds TFX's Tuner when `tuner.enabled` is set in the config; the
Tuner calls `tuner_fn`, runs `max_trials` random trials, and writes the best
values as its `best_hyperparameters` artifact, which the Trainer reads
(`fn_args.hyperparameters`), where they win over the config's values
(`TrainingArgs.from_custom_config`).

Each trial trains exactly as the Trainer does (`models.trainer.train`) with
the trial's values, so the names below are `Hyperparameters` field names and
`hidden_units` is a comma-separated string ("32,16") because KerasTuner's
choices hold scalars only. KerasTuner drives the search alone; the template's
tf.keras model never meets KerasTuner's Keras 3 objects.
"""


from typing import Any, Dict, Mapping

import keras_tuner

OBJECTIVE = keras_tuner.Objective("val_accuracy", direction="max")


def search_space() -> keras_tuner.HyperParameters:
    """The hyperparameters the Tuner searches, by `Hyperparameters` field name."""
    hp = keras_tuner.HyperParameters()
    hp.Choice("learning_rate", [0.003, 0.01, 0.03])
    hp.Choice("hidden_units", ["8", "16,8", "32,16"])
    hp.Choice("dropout", [0.0, 0.1])
    return hp


class TrainerTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Runs each trial through `models.trainer.train` and reports its last validation accuracy."""

    def __init__(self, oracle, custom_config: Mapping[str, Any], tf_transform_output,
                 train_dataset_fn, eval_dataset_fn, train_steps: int, eval_steps: int, **kwargs):
        super().__init__(oracle, **kwargs)
        self._custom_config = dict(custom_config)
        self._tf_transform_output = tf_transform_output
        self._train_dataset_fn = train_dataset_fn
        self._eval_dataset_fn = eval_dataset_fn
        self._train_steps = train_steps
        self._eval_steps = eval_steps

    def run_trial(self, trial, *fit_args, **fit_kwargs) -> Dict[str, float]:
        from models import trainer

        args = trainer.TrainingArgs.from_custom_config(self._custom_config, trial.hyperparameters.values)
        model = trainer.train(args, self._tf_transform_output, self._train_dataset_fn,
                              self._eval_dataset_fn, self._train_steps, self._eval_steps)
        return {OBJECTIVE.name: float(model.history.history[OBJECTIVE.name][-1])}


def tuner_fn(fn_args):
    """TFX Tuner entry point: a random search over `search_space()`.

    `fn_args.custom_config` is the Trainer's custom_config plus
    `tuner: {max_trials: N}`; the trials' train and eval steps come from the
    Tuner's own train_args and eval_args.
    """
    import tensorflow_transform as tft
    from tfx.components.tuner.component import TunerFnResult

    from models import trainer

    custom_config = dict(fn_args.custom_config or {})
    tuner_settings = custom_config.pop("tuner", {})
    args = trainer.TrainingArgs.from_custom_config(custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)

    def dataset(file_pattern, batch_size):
        return trainer.make_dataset(fn_args.data_accessor, file_pattern, tf_transform_output,
                                    batch_size, args.seed)

    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=OBJECTIVE, max_trials=int(tuner_settings.get("max_trials", 3)),
        hyperparameters=search_space(), seed=args.seed)
    tuner = TrainerTuner(
        oracle, custom_config, tf_transform_output,
        train_dataset_fn=lambda batch_size: dataset(fn_args.train_files, batch_size),
        eval_dataset_fn=lambda batch_size: dataset(fn_args.eval_files, batch_size),
        train_steps=fn_args.train_steps, eval_steps=fn_args.eval_steps,
        directory=fn_args.working_dir, project_name="trials", overwrite=True)
    return TunerFnResult(tuner=tuner, fit_kwargs={})

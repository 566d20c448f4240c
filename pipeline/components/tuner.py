"""The optional Tuner component of the pipeline, built from the config's `tuner` section.

`create_pipeline` adds it between Transform and Trainer when `tuner.enabled`
is set, and passes its `best_hyperparameters` output to the Trainer. The
search space and `tuner_fn` live with the model, in models/tuning.py.
"""

import dataclasses

from tfx.proto import trainer_pb2

from pipeline.config import PipelineConfig

# The Tuner trains its trials in one process, so multi-process strategies are
# replaced by the single-process one for the search.
SINGLE_PROCESS_STRATEGIES = ("one_device", "mirrored")


def tuner_component(config: PipelineConfig, examples, transform_graph, schema,
                    code_fingerprint: str = ""):
    """A Tuner over Transform's outputs; None of its values are read outside `config`.

    `code_fingerprint` (of the tuning code) goes into its custom_config, so that edited
    tuning code is not served from the cache.
    """
    # Here, not at the top: TFX's Tuner imports KerasTuner and Keras 3 (seconds), which a
    # pipeline without the Tuner never needs.
    from tfx.components import Tuner

    hyperparameters = dataclasses.asdict(config.hyperparameters)
    hyperparameters["hidden_units"] = list(config.hyperparameters.hidden_units)
    strategy = config.strategy if config.strategy in SINGLE_PROCESS_STRATEGIES else "one_device"
    return Tuner(
        tuner_fn=config.tuner.tuner_fn,
        examples=examples,
        transform_graph=transform_graph,
        schema=schema,
        train_args=trainer_pb2.TrainArgs(num_steps=config.tuner.train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=config.tuner.eval_steps),
        custom_config={
            "hyperparameters": hyperparameters,
            "strategy": strategy,
            "seed": config.seed,
            "deterministic_ops": config.deterministic_ops,
            "tuner": {"max_trials": config.tuner.max_trials},
            "code_fingerprint": code_fingerprint,
        },
    )

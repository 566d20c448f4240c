"""AutoGraph leaves tf-keras's own code alone in training (pipeline/training/autograph.py).

Converting it made the Trainer's first step take 25-79 s; these tests count what AutoGraph
converts while `models.trainer.train` runs a few steps on in-memory data.
"""

import pytest
import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.impl import api as autograph_api

from models import trainer
from pipeline.config import Hyperparameters
from pipeline.training import autograph
from tests import tiny_training


def _dataset(batch_size):
    return tiny_training.dataset(batch_size, rows=24, spread=False)


@pytest.fixture
def converted_modules(monkeypatch):
    """Starts from TensorFlow's own rules and records every function AutoGraph converts (module.name)."""
    rules = tuple(r for r in autograph_config.CONVERSION_RULES if getattr(r, "_prefix", "") != "tf_keras")
    monkeypatch.setattr(autograph_config, "CONVERSION_RULES", rules)
    modules = []
    convert = autograph_api._convert_actual

    def recording(entity, program_ctx):
        modules.append(f'{getattr(entity, "__module__", "")}.{getattr(entity, "__name__", "")}')
        return convert(entity, program_ctx)

    monkeypatch.setattr(autograph_api, "_convert_actual", recording)
    return modules


def test_training_converts_no_tf_keras_code(converted_modules):
    args = trainer.TrainingArgs(Hyperparameters(batch_size=8, hidden_units=(4,)), deterministic_ops=False)
    model = trainer.train(args, tiny_training.TransformOutput(), _dataset, _dataset, train_steps=2,
                          eval_steps=1)
    assert model.optimizer.iterations.numpy() == 2
    # A tf.function's own Python function is always converted (Keras's train_function and
    # test_function closures); nothing they call from tf-keras may be.
    entry_points = {"tf_keras.src.engine.training.train_function",
                    "tf_keras.src.engine.training.test_function"}
    converted = [m for m in converted_modules if m.startswith("tf_keras")]
    assert set(converted) <= entry_points, converted


def test_the_rule_is_added_once(converted_modules):
    before = len(autograph_config.CONVERSION_RULES)
    autograph.skip_tf_keras_conversion()
    autograph.skip_tf_keras_conversion()
    assert len(autograph_config.CONVERSION_RULES) == before + 1
    assert autograph_config.CONVERSION_RULES[0].get_action(tf.keras.Model) is not None

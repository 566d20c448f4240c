"""Several training steps per execution (`hyperparameters.steps_per_execution`) change only speed.

`models.trainer.train` runs on in-memory data, so no pipeline run is needed: the number of
steps stays exactly as configured when the value does not divide it or exceeds it, the
weights are the same as one step per execution gives, callbacks that count batches still
see the last batch, and the train function is traced once. The strategies' own runs are in
tests/test_cluster.py.
"""

import numpy as np
import tensorflow as tf

from models import trainer
from pipeline.config import Hyperparameters
from tests import tiny_training


def _train(steps_per_execution, train_steps, tmp_path=None):
    args = trainer.TrainingArgs(Hyperparameters(batch_size=8, hidden_units=(4,), learning_rate=0.05,
                                                steps_per_execution=steps_per_execution),
                                deterministic_ops=False)
    data = tiny_training.dataset
    return trainer.train(args, tiny_training.TransformOutput(), data, data, train_steps=train_steps,
                         eval_steps=3, log_dir=str(tmp_path) if tmp_path else None)


def test_a_value_that_does_not_divide_the_steps_keeps_their_number_and_the_weights():
    one = _train(steps_per_execution=1, train_steps=11)
    four = _train(steps_per_execution=4, train_steps=11)  # executions of 4, 4 and 3 steps
    assert one.optimizer.iterations.numpy() == four.optimizer.iterations.numpy() == 11
    for a, b in zip(one.get_weights(), four.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_more_steps_per_execution_than_steps_is_clipped_to_the_steps(tmp_path):
    model = _train(steps_per_execution=25, train_steps=3, tmp_path=tmp_path)
    assert model.optimizer.iterations.numpy() == 3
    assert model.steps_per_execution.numpy() == 3
    # The TensorBoard callback of the Trainer wrote its epoch summaries.
    assert tf.io.gfile.glob(str(tmp_path / "train" / "events.out.tfevents.*"))


def test_callbacks_that_count_batches_see_the_last_batch():
    model = _train(steps_per_execution=4, train_steps=4)
    batch_ends = []
    counter = tf.keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_ends.append(batch))
    model.fit(tiny_training.dataset(8), steps_per_epoch=10, epochs=2, verbose=0, callbacks=[counter])
    # One call per execution (4, 4, then the shorter 2), numbered by the last batch it ran.
    assert batch_ends == [3, 7, 9, 3, 7, 9]
    assert model.optimizer.iterations.numpy() == 4 + 20


def test_the_train_function_is_traced_once():
    # Adam's slot variables exist before fit; a first call that created them would trace again.
    model = _train(steps_per_execution=4, train_steps=8)
    assert model.train_tf_function.experimental_get_tracing_count() == 1

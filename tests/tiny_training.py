"""A stand-in Transform output and a small in-memory dataset, for tests that call `models.trainer.train`.

Shared by tests/test_autograph.py and tests/test_steps_per_execution.py, which train the default
model for a few steps without running Transform.
"""

import numpy as np
import tensorflow as tf

from models import features


class TransformOutput:
    """The one method `models.trainer.model_from_transform_output` asks of TFTransformOutput."""

    def vocabulary_size_by_name(self, name):
        return 3


def dataset(batch_size: int, rows: int = 48, spread: bool = True):
    """Repeating batches of transformed features and 3-class labels.

    With `spread`, each numeric value also varies along the rows (not only by class).
    """
    labels = np.arange(rows) % 3
    numeric = labels + (np.linspace(0, 1, rows) if spread else 0.1)
    inputs = {features.transformed_name(k): numeric.astype("float32")[:, None]
              for k in features.NUMERIC_FEATURE_KEYS}
    inputs.update({features.transformed_name(k): (labels % 3)[:, None].astype("int64")
                   for k in features.CATEGORICAL_FEATURE_KEYS})
    return tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(batch_size).repeat()

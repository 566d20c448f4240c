"""The Keras model, built from the feature vocabulary and hyperparameters.

The model has two parts so that edge export can take the int8-friendly part
alone:
- an encoder (inside the model) that turns transformed features into one dense
  float vector: z-scored numerics, then a one-hot block per categorical;
- `classifier`, a plain Sequential of Dense layers over that vector.
"""


import re
from typing import Mapping, Sequence

import tensorflow as tf

from models import features

CLASSIFIER_LAYER = "classifier"
ENCODED_LAYER = "encoded_features"


def build_model(
    numeric_keys: Sequence[str],
    categorical_sizes: Mapping[str, int],
    num_classes: int,
    hidden_units: Sequence[int] = (16, 8),
    learning_rate: float = 0.01,
    dropout: float = 0.0,
    steps_per_execution: int = 1,
) -> tf.keras.Model:
    """A compiled classifier over transformed features.

    Args:
      numeric_keys: raw names of numeric features (inputs are their transformed names).
      categorical_sizes: raw name -> number of ids (vocabulary size plus OOV buckets).
      num_classes: number of label classes.
      hidden_units: sizes of the hidden Dense layers.
      learning_rate: Adam's learning rate.
      dropout: dropout rate after each hidden layer (0 disables it).
      steps_per_execution: training steps per call of Keras's compiled train function.
    """
    inputs = {}
    parts = []
    for key in numeric_keys:
        name = features.transformed_name(key)
        inputs[name] = tf.keras.Input(shape=(1,), name=name, dtype=tf.float32)
        parts.append(inputs[name])
    for key, size in categorical_sizes.items():
        name = features.transformed_name(key)
        inputs[name] = tf.keras.Input(shape=(1,), name=name, dtype=tf.int64)
        parts.append(tf.keras.layers.CategoryEncoding(
            num_tokens=size, output_mode="one_hot", name=layer_name(f"{name}_one_hot"))(inputs[name]))
    encoded = tf.keras.layers.Concatenate(name=ENCODED_LAYER)(parts)
    classifier = build_classifier(int(encoded.shape[-1]), num_classes, hidden_units, dropout)
    model = tf.keras.Model(inputs=inputs, outputs=classifier(encoded))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )
    return model


def layer_name(text: str) -> str:
    """`text` as a Keras layer name: TensorFlow's name scopes refuse spaces, parentheses and the
    like, which CSV headers ("Color Code") may hold; an input's own name may keep them."""
    safe = re.sub(r"[^A-Za-z0-9_.\\/>-]", "_", text)
    return safe if re.match(r"[A-Za-z0-9.]", safe) else f"x{safe}"


def build_classifier(input_dim: int, num_classes: int, hidden_units: Sequence[int],
                     dropout: float = 0.0) -> tf.keras.Sequential:
    """Dense layers from the encoded feature vector to class probabilities."""
    layers = [tf.keras.Input(shape=(input_dim,), dtype=tf.float32)]
    for units in hidden_units:
        layers.append(tf.keras.layers.Dense(units, activation="relu"))
        if dropout:
            layers.append(tf.keras.layers.Dropout(dropout))
    layers.append(tf.keras.layers.Dense(num_classes, activation="softmax"))
    return tf.keras.Sequential(layers, name=CLASSIFIER_LAYER)

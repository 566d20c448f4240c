"""The Keras model builds from the feature vocabulary and learns on a few rows."""

import numpy as np
import tensorflow as tf

from models import features, model


def _model(**kwargs):
    sizes = {k: 4 for k in features.CATEGORICAL_FEATURE_KEYS}
    return model.build_model(features.NUMERIC_FEATURE_KEYS, sizes, num_classes=3, **kwargs)


def _batch(n=12, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    inputs = {features.transformed_name(k): (labels + rng.normal(0, 0.1, n)).astype("float32")[:, None]
              for k in features.NUMERIC_FEATURE_KEYS}
    inputs.update({features.transformed_name(k): (labels % 4)[:, None].astype("int64")
                   for k in features.CATEGORICAL_FEATURE_KEYS})
    return inputs, labels


def test_model_inputs_and_layers_follow_the_feature_vocabulary():
    m = _model(hidden_units=(8, 4))
    assert sorted(m.input_names) == sorted(features.transformed_name(k) for k in features.feature_keys())
    encoded = m.get_layer(model.ENCODED_LAYER)
    width = len(features.NUMERIC_FEATURE_KEYS) + 4 * len(features.CATEGORICAL_FEATURE_KEYS)
    assert encoded.output.shape[-1] == width
    classifier = m.get_layer(model.CLASSIFIER_LAYER)
    assert [layer.units for layer in classifier.layers] == [8, 4, 3]


def test_one_training_step_changes_weights_and_reduces_loss():
    tf.keras.utils.set_random_seed(1)
    m = _model(learning_rate=0.05)
    inputs, labels = _batch()
    before = [w.numpy().copy() for w in m.trainable_weights]
    loss_before = m.evaluate(inputs, labels, verbose=0)[0]
    m.train_on_batch(inputs, labels)
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, m.trainable_weights))
    for _ in range(30):
        m.train_on_batch(inputs, labels)
    assert m.evaluate(inputs, labels, verbose=0)[0] < loss_before
    probabilities = m.predict(inputs, verbose=0)
    assert probabilities.shape == (12, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_columns_whose_names_tensorflow_scopes_refuse_still_build_and_train():
    # CSV headers such as "Color Code" or "(kg)" are not valid TensorFlow scope names.
    built = model.build_model(["Sepal Width", "mass (kg)"], {"Color Code": 3, "_flag": 2}, 2)
    inputs = {features.transformed_name("Sepal Width"): np.zeros((4, 1), np.float32),
              features.transformed_name("mass (kg)"): np.ones((4, 1), np.float32),
              features.transformed_name("Color Code"): np.array([[0], [1], [2], [1]]),
              features.transformed_name("_flag"): np.array([[0], [1], [0], [1]])}
    history = built.fit(inputs, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert set(built.input_names) == set(inputs)


def test_dropout_adds_layers_only_when_asked():
    with_dropout = _model(dropout=0.5).get_layer(model.CLASSIFIER_LAYER)
    without = _model().get_layer(model.CLASSIFIER_LAYER)
    assert sum(isinstance(layer, tf.keras.layers.Dropout) for layer in with_dropout.layers) == 2
    assert not any(isinstance(layer, tf.keras.layers.Dropout) for layer in without.layers)

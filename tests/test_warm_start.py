"""Warm start (`pipeline.training.warm_start` through `models.trainer.train`), on in-memory data.

A stand-in for Transform's output supplies vocabularies, so no pipeline run is needed; the
pipeline's own use (the resolver's model as the Trainer's base_model) is checked by the
watcher's shared run in tests/test_watch.py.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from models import features, trainer
from pipeline.config import Hyperparameters
from pipeline.training import warm_start

VOCABULARIES = {
    features.vocabulary_name("island"): ["Biscoe", "Dream", "Torgersen"],
    features.vocabulary_name("sex"): ["male", "female"],
    features.LABEL_VOCABULARY: ["Adelie", "Gentoo", "Chinstrap"],
}


class FakeTransformOutput:
    """The two vocabulary lookups the Trainer's model building uses."""

    def __init__(self, vocabularies):
        self.vocabularies = vocabularies

    def vocabulary_by_name(self, name):
        return [v.encode() for v in self.vocabularies[name]]

    def vocabulary_size_by_name(self, name):
        return len(self.vocabularies[name])


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    inputs = {features.transformed_name(k): (labels + rng.normal(0, 0.3, n)).astype("float32")[:, None]
              for k in features.NUMERIC_FEATURE_KEYS}
    inputs.update({features.transformed_name(k): (labels % 2)[:, None].astype("int64")
                   for k in features.CATEGORICAL_FEATURE_KEYS})
    return inputs, labels


def _dataset(batch_size):
    inputs, labels = _data()
    return tf.data.Dataset.from_tensor_slices((inputs, labels)).repeat().batch(batch_size)


def _train(tmp_path, name, base_model=None, vocabularies=VOCABULARIES, hidden_units=(8, 4),
           steps=60, learning_rate=0.05):
    args = trainer.TrainingArgs(Hyperparameters(hidden_units=hidden_units, learning_rate=learning_rate,
                                                batch_size=16), deterministic_ops=False)
    log_dir = str(tmp_path / name / "logs")
    model = trainer.train(args, FakeTransformOutput(vocabularies), _dataset, _dataset,
                          train_steps=steps, eval_steps=2, log_dir=log_dir, base_model=base_model)
    with open(os.path.join(log_dir, trainer.WARM_START_FILE)) as f:
        return model, json.load(f)


def _save(model, directory, vocabularies=VOCABULARIES):
    """What the Trainer's export leaves that warm start reads: the Keras model and its vocabulary assets."""
    model.save(directory, save_format="tf")
    os.makedirs(os.path.join(directory, "assets"), exist_ok=True)
    for name, tokens in vocabularies.items():
        with open(os.path.join(directory, "assets", name), "w") as f:
            f.write("\n".join(tokens) + "\n")
    return directory


def _loss(model):
    inputs, labels = _data(seed=1)
    return model.evaluate(inputs, labels, verbose=0)[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("warm_start")
    model, started = _train(tmp_path, "base")
    assert started["mode"] == warm_start.COLD and started["reason"].startswith("no base model")
    return model, _save(model, str(tmp_path / "base_model"))


def test_warm_start_copies_the_previous_weights_before_the_first_step(base):
    base_model, base_dir = base
    fresh = trainer.model_from_transform_output(FakeTransformOutput(VOCABULARIES), Hyperparameters(
        hidden_units=(8, 4)))
    cold_loss = _loss(fresh)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh.get_weights(), base_model.get_weights()))
    encoded = {name: [token.encode() for token in tokens] for name, tokens in VOCABULARIES.items()}
    result = warm_start.warm_start(fresh, base_dir, encoded)
    assert result.mode == warm_start.WARM, result.reason
    for before, previous in zip(fresh.get_weights(), base_model.get_weights()):
        np.testing.assert_array_equal(before, previous)
    # The trained base model's loss, far below a fresh model's.
    assert _loss(fresh) < 0.5 * cold_loss


def test_train_with_a_base_model_starts_warm_and_records_it(base, tmp_path):
    base_model, base_dir = base
    # One step at a tiny learning rate: the result stays next to the base model's weights.
    model, started = _train(tmp_path, "warm", base_model=base_dir, steps=1, learning_rate=1e-6)
    assert started == {"mode": "warm", "reason": f"weights of {base_dir}", "base_model": base_dir}
    np.testing.assert_allclose(_loss(model), _loss(base_model), rtol=1e-2)


@pytest.mark.parametrize("change, expected", [
    ({"vocabularies": {**VOCABULARIES, features.vocabulary_name("island"): ["Biscoe", "Dream", "Torgersen",
                                                                          "Anvers"]}},
     "vocabulary 'island_vocabulary' changed (added ['Anvers'])"),
    ({"vocabularies": {**VOCABULARIES, features.LABEL_VOCABULARY: ["Gentoo", "Adelie", "Chinstrap"]}},
     "vocabulary 'label_vocabulary' changed (order changed)"),
    ({"hidden_units": (6, 4)}, "the model's shape changed"),
])
def test_changed_vocabulary_or_shape_starts_cold_with_the_reason(base, tmp_path, change, expected):
    _, base_dir = base
    _, started = _train(tmp_path, "cold", base_model=base_dir, steps=1, **change)
    assert started["mode"] == warm_start.COLD
    assert started["reason"].startswith(expected), started["reason"]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_trainer_gets_the_latest_blessed_model_only_when_warm_start_is_on(tmp_path, enabled):
    from pipeline.config import load_config
    from pipeline.pipeline import create_pipeline
    from tests.conftest import DATA_ROOT, SCHEMA_PATH

    config = load_config(overrides={"data_root": DATA_ROOT, "schema_path": SCHEMA_PATH,
                                    "output_dir": str(tmp_path), "lifecycle": {"warm_start": enabled}})
    components = {c.id: c for c in create_pipeline(config).components}
    base_model = components["Trainer"].inputs.get("base_model")
    if enabled:
        # The served model (TFX's latest blessed, resolved before training), which ModelDecay scores.
        assert base_model.producer_component_id == "served_model_resolver"
        assert "served_model_resolver" in components
    else:
        assert base_model is None

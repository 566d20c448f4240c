"""The Evaluator's baseline resolver (pipeline/components/baseline_resolver.py), on artifacts in memory."""

from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.types.standard_artifacts import Model, ModelBlessing

from pipeline.components.baseline_resolver import (
    ROLLED_BACK_PROPERTY,
    PreviousBlessedModelStrategy,
    ServedModelStrategy,
)


def _model(artifact_id):
    model = Model()
    model.id = artifact_id
    return model


def _blessing(model_id, blessed=True):
    blessing = ModelBlessing()
    blessing.id = 1000 + model_id
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def _resolve(strategy, models, blessings, candidate=None):
    inputs = {"model": models, "model_blessing": blessings}
    if candidate is not None:
        inputs["candidate"] = [candidate]
    return strategy.resolve_artifacts(None, inputs)


def test_a_cached_candidate_is_not_its_own_baseline():
    """An unchanged re-run: the candidate (7) is the latest blessed model, so TFX's strategy
    returns it; the baseline must be what the first run compared against (3)."""
    models = [_model(3), _model(5), _model(7)]
    blessings = [_blessing(3), _blessing(5, blessed=False), _blessing(7)]
    assert [m.id for m in _resolve(LatestBlessedModelStrategy(), models, blessings)["model"]] == [7]
    resolved = _resolve(PreviousBlessedModelStrategy(), models, blessings, candidate=_model(7))
    assert [m.id for m in resolved["model"]] == [3]
    assert [b.id for b in resolved["model_blessing"]] == [1003]


def test_models_trained_after_the_candidate_are_ignored():
    models = [_model(3), _model(7), _model(9)]
    blessings = [_blessing(3), _blessing(9)]
    resolved = _resolve(PreviousBlessedModelStrategy(), models, blessings, candidate=_model(7))
    assert [m.id for m in resolved["model"]] == [3]


def test_no_earlier_blessed_model_means_no_baseline():
    resolved = _resolve(PreviousBlessedModelStrategy(), [_model(7)], [_blessing(7)], candidate=_model(7))
    assert resolved["model"] == [] and resolved["model_blessing"] == []
    empty = _resolve(PreviousBlessedModelStrategy(), [], [], candidate=_model(2))
    assert empty["model"] == [] and empty["model_blessing"] == []


def _rolled_back(model):
    model.set_int_custom_property(ROLLED_BACK_PROPERTY, 1)
    return model


def test_a_rolled_back_model_is_neither_the_served_model_nor_a_baseline():
    """TFX's strategy still picks the model a rollback moved serving away from (7)."""
    models = [_model(3), _model(5), _rolled_back(_model(7))]
    blessings = [_blessing(3), _blessing(5), _blessing(7)]
    assert [m.id for m in _resolve(LatestBlessedModelStrategy(), models, blessings)["model"]] == [7]
    assert [m.id for m in _resolve(ServedModelStrategy(), models, blessings)["model"]] == [5]
    baseline = _resolve(PreviousBlessedModelStrategy(), models, blessings, candidate=_model(9))
    assert [m.id for m in baseline["model"]] == [5]
    assert [b.id for b in baseline["model_blessing"]] == [1005]
    # Every blessed model rolled back: nothing to serve, warm-start from or compare with.
    none_left = [_rolled_back(_model(3))]
    assert _resolve(ServedModelStrategy(), none_left, [_blessing(3)])["model"] == []

"""`models.trainer.train` fits with the older objects frozen (pipeline/training/frozen_heap.py), and
leaves the process's collector as it found it."""

import gc

import pytest
import tensorflow as tf

from models import trainer
from pipeline.config import Hyperparameters
from pipeline.training.frozen_heap import frozen_heap
from tests import tiny_training


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


class Tracked:
    """Instances of a plain class are tracked by the collector."""


def _collected(obj, generation=None) -> bool:
    """Whether the collector's generations (not the frozen one) hold `obj`."""
    return any(o is obj for o in gc.get_objects(generation=generation))


def test_objects_from_before_are_frozen_inside_and_handed_back_after(unfrozen):
    older = Tracked()
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        assert not _collected(older)
        assert _collected(Tracked())  # objects made inside are collected as usual
    assert gc.get_freeze_count() == 0
    assert _collected(older, generation=2)  # back in the oldest generation


def test_an_earlier_freeze_is_left_in_place(unfrozen, monkeypatch):
    # Calls, not counts: a frozen object that dies leaves the count, so other threads of the
    # process (TensorFlow's, pytest-xdist's) move it.
    gc.freeze()
    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    with frozen_heap():
        pass
    assert calls == []
    assert gc.get_freeze_count() > 0


def test_train_fits_inside_the_frozen_heap_and_unfreezes_after(unfrozen, monkeypatch):
    counts = []
    fit = tf.keras.Model.fit

    def recording_fit(self, *args, **kwargs):
        counts.append(gc.get_freeze_count())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(tf.keras.Model, "fit", recording_fit)
    args = trainer.TrainingArgs(Hyperparameters(batch_size=8, hidden_units=(4,)), deterministic_ops=False)
    trainer.train(args, tiny_training.TransformOutput(), tiny_training.dataset, tiny_training.dataset,
                  train_steps=2, eval_steps=1)
    assert len(counts) == 1 and counts[0] > 0
    assert gc.get_freeze_count() == 0

"""Warm start: give a freshly built model the weights of a previous model, when they still fit.

`models.trainer.train` calls `warm_start` with the Trainer's `base_model` (the latest blessed
model, resolved by TFX's latest-blessed strategy (`served_model_resolver`) when `lifecycle.warm_start` is on).

Weights carry over only when they mean the same thing in both models: every Transform
vocabulary (categorical features and the label) must be identical, in the same order, because
a vocabulary id is a one-hot position and a class id is an output unit; and every weight must
have the same shape (hidden units, new features). Otherwise training starts cold and the
reason is logged and returned. The exported model keeps its vocabularies as SavedModel assets
(`assets/<vocabulary name>`), so the comparison needs no other artifact.
"""

import dataclasses
import logging
import os
from typing import Mapping, Optional, Sequence

from tfx.dsl.io import fileio

WARM = "warm"
COLD = "cold"
# Written by `models.trainer` next to TensorBoard's logs in the Trainer's ModelRun artifact: how
# training started (warm or cold, and why), which the rehearsal reads back through ML Metadata.
WARM_START_FILE = "warm_start.json"


@dataclasses.dataclass(frozen=True)
class WarmStartResult:
    """How training started: `mode` is "warm" or "cold"; `reason` says why (and from what)."""

    mode: str
    reason: str
    base_model: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def vocabulary_change(base_model_dir: str, vocabularies: Mapping[str, Sequence[str]]) -> Optional[str]:
    """Names the first vocabulary that differs between the base model and now, or None."""
    for name, current in sorted(vocabularies.items()):
        path = os.path.join(base_model_dir, "assets", name)
        if not fileio.exists(path):
            return f"the base model has no vocabulary {name!r}"
        with fileio.open(path, "rb") as f:
            previous = [line.decode("utf-8") for line in f.read().splitlines()]
        current = [_text(v) for v in current]
        if previous != current:
            added = sorted(set(current) - set(previous))
            removed = sorted(set(previous) - set(current))
            detail = (f"added {added}" if added else "") + (f" removed {removed}" if removed else "")
            return f"vocabulary {name!r} changed ({detail.strip() or 'order changed'})"
    return None


def warm_start(model, base_model_dir: Optional[str],
               vocabularies: Mapping[str, Sequence[str]]) -> WarmStartResult:
    """Copies the base model's weights into `model` when compatible; returns what happened.

    Args:
      model: the freshly built Keras model (inside the strategy's scope).
      base_model_dir: the base model's SavedModel directory, or None for no base model.
      vocabularies: vocabulary name -> tokens, as Transform produced them for this run.
    """
    log = logging.getLogger(__name__)
    if not base_model_dir:
        result = WarmStartResult(COLD, "no base model (lifecycle.warm_start is off, or no model is "
                                       "blessed yet)")
    else:
        result = _try_warm_start(model, base_model_dir, vocabularies)
    log.info("Training starts %s: %s", result.mode, result.reason)
    return result


def _try_warm_start(model, base_model_dir: str, vocabularies) -> WarmStartResult:
    changed = vocabulary_change(base_model_dir, vocabularies)
    if changed:
        return WarmStartResult(COLD, changed, base_model_dir)
    import tensorflow as tf

    base = tf.keras.models.load_model(base_model_dir, compile=False)
    base_shapes = [tuple(w.shape) for w in base.weights]
    shapes = [tuple(w.shape) for w in model.weights]
    if base_shapes != shapes:
        return WarmStartResult(COLD, f"the model's shape changed (weights {base_shapes} -> {shapes})",
                               base_model_dir)
    model.set_weights(base.get_weights())
    return WarmStartResult(WARM, f"weights of {base_model_dir}", base_model_dir)


def _text(token) -> str:
    return token.decode("utf-8") if isinstance(token, bytes) else str(token)

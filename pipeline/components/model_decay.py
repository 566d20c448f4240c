"""`ModelDecay`: the served model's accuracy on the newest labelled span, before retraining.

`create_pipeline` feeds it the latest blessed model (the same resolver that
gives the Evaluator its baseline) and `SpanExampleGen`'s two splits, the newest
span and the span before it. It computes the model's accuracy on both through
its `serving_default` signature (the one TF Serving answers with) and records
them in ML Metadata as custom properties of a `ServedModelAccuracy` artifact:
the model's id, each span and its accuracy, the drop, and `retrain_trigger`
= 1 when the drop is larger than `monitoring.decay_threshold`. The first run
has no blessed model yet and records `evaluated` = 0.

TFMA's Evaluator would need a second full evaluation pass per span and a
blessing-shaped output; this needs one number per span, so it calls the
signature directly. `pipeline.ops.monitoring.decay_records` reads the records
back for `tfxt runs` and for rollback decisions.
"""

import logging
import os
from typing import Tuple

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact
from tfx.types.standard_artifacts import Examples, Model

from models import features
from pipeline.components.drift_gate import NEWEST_SPLIT, PREVIOUS_SPLIT
from pipeline.training import signatures

NODE_ID = "ModelDecay"
BATCH_SIZE = 256


class ServedModelAccuracy(artifact.Artifact):
    """The served model's accuracy on the newest span and the one before; custom properties only."""

    TYPE_NAME = "ServedModelAccuracy"


def split_accuracy(predict, examples_uri: str, split: str) -> Tuple[float, int]:
    """(accuracy, labelled examples) of `predict` on one split of an Examples artifact."""
    import tensorflow as tf

    files = fileio.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(BATCH_SIZE)
    label_spec = {features.LABEL_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}
    correct = total = 0
    for batch in dataset:
        labels = tf.io.parse_example(batch, label_spec)[features.LABEL_KEY].numpy()
        outputs = predict(examples=batch)
        best = tf.argmax(outputs["scores"], axis=-1)
        predicted = tf.gather(outputs["classes"], best, batch_dims=1).numpy()
        labelled = labels != b""
        correct += int((predicted[labelled] == labels[labelled]).sum())
        total += int(labelled.sum())
    return (correct / total if total else float("nan")), total


@component
def ModelDecay(examples: InputArtifact[Examples],  # noqa: N802 - a component name
               accuracy: OutputArtifact[ServedModelAccuracy],
               newest_span: Parameter[int], previous_span: Parameter[int],
               decay_threshold: Parameter[float],
               model: InputArtifact[Model] = None) -> None:
    """Records the served model's accuracy on the newest and previous spans, and the trigger."""
    properties = {"newest_span": newest_span, "previous_span": previous_span,
                  "decay_threshold": decay_threshold}
    if model is None:
        properties.update(evaluated=0, retrain_trigger=0, reason="no blessed model yet")
    else:
        import tensorflow as tf
        from tfx.utils import path_utils

        predict = tf.saved_model.load(path_utils.serving_model_path(model.uri)).signatures[
            signatures.SERVING_DEFAULT]
        newest, newest_count = split_accuracy(predict, examples.uri, NEWEST_SPLIT)
        previous, previous_count = split_accuracy(predict, examples.uri, PREVIOUS_SPLIT)
        drop = previous - newest
        trigger = drop > decay_threshold
        properties.update(
            evaluated=1, model_id=model.id, model_uri=model.uri, newest_accuracy=newest,
            newest_examples=newest_count, previous_accuracy=previous,
            previous_examples=previous_count, accuracy_drop=drop, retrain_trigger=int(trigger),
            reason=(f"accuracy fell from {previous:.3f} on span {previous_span} to {newest:.3f} on "
                    f"span {newest_span}, a drop of {drop:.3f} > {decay_threshold:g}"
                    if trigger else f"drop {drop:.3f} within {decay_threshold:g}"))
        logging.info("Served model #%d: %s", model.id, properties["reason"])
    for name, value in properties.items():
        if isinstance(value, str):
            accuracy.set_string_custom_property(name, value)
        elif isinstance(value, float):
            accuracy.set_float_custom_property(name, value)
        else:
            accuracy.set_int_custom_property(name, int(value))

"""The Evaluator's gates (issue 13, case 8), checked with TFMA's own validator on given metrics.

`eval_config(config)` goes through TFMA's defaults as the Evaluator applies them (a candidate and
a baseline model), then `metrics_validator.validate_metrics` judges one slice's metrics, exactly
as it does inside the Evaluator. No model is trained: the metric values are the test's input.
"""

import pytest

from pipeline.config import load_config
from tests.conftest import DATA_ROOT, SCHEMA_PATH

ACCURACY = "sparse_categorical_accuracy"
OVERALL = ()
TORGERSEN = (("island", b"Torgersen"),)  # 15 eval examples in the bundled data
BISCOE = (("island", b"Biscoe"),)        # 38


def _eval_config(**thresholds):
    import tensorflow_model_analysis as tfma

    from pipeline.pipeline import eval_config

    config = load_config(overrides={"data_root": DATA_ROOT, "schema_path": SCHEMA_PATH,
                                    "thresholds": thresholds})
    return tfma.utils.update_eval_config_with_defaults(eval_config(config), has_baseline=True)


def _validate(config, slice_key, accuracy, count, change=0.0):
    """TFMA's verdict on one slice whose candidate has `accuracy` over `count` examples.

    With a baseline TFMA always computes the change against it (`change`); a threshold whose
    metric is missing counts as failed on every slice.
    """
    from tensorflow_model_analysis.evaluators import metrics_validator
    from tensorflow_model_analysis.metrics import metric_types

    from pipeline.components.slice_gate import SliceGateAccuracy

    candidate = next(spec.name for spec in config.model_specs if not spec.is_baseline)
    metrics = {
        metric_types.MetricKey(name=ACCURACY, model_name=candidate): accuracy,
        metric_types.MetricKey(name="example_count", model_name=candidate): count,
    }
    metrics[metric_types.MetricKey(name=ACCURACY, model_name=candidate, is_diff=True)] = change
    # The slice gate's value, from the metric's own derived computation.
    for computation in SliceGateAccuracy(min_examples=_min_examples(config)).computations(
            eval_config=config, model_names=[candidate], output_names=[""]):
        metrics.update(computation.result(dict(metrics)))
    return metrics_validator.validate_metrics((slice_key, metrics), config)


def _min_examples(config) -> int:
    import json

    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if metric.class_name == "SliceGateAccuracy":
                return json.loads(metric.config)["min_examples"]
    return 30


def test_change_threshold_does_not_veto_a_model_over_a_small_slices_noise():
    config = _eval_config()
    # One more wrong prediction in the 15-example Torgersen slice: -6.7 points.
    assert _validate(config, TORGERSEN, accuracy=0.9333, count=15, change=-0.0667).validation_ok
    assert _validate(config, TORGERSEN, accuracy=0.5, count=15).validation_ok


def test_overall_gates_still_hold_and_the_reason_names_slice_metric_value_and_threshold():
    from pipeline.ops.summary import validation_reasons

    config = _eval_config(min_accuracy=0.9, max_accuracy_drop=0.02)
    low = _validate(config, OVERALL, accuracy=0.0667, count=84)
    assert not low.validation_ok
    assert validation_reasons(low) == [f"Overall: {ACCURACY} = 0.0667, needs >= 0.9"]
    dropped = _validate(config, OVERALL, accuracy=0.95, count=84, change=-0.03)
    assert not dropped.validation_ok
    assert validation_reasons(dropped) == [
        f"Overall: {ACCURACY} change vs baseline = -0.0300, needs >= -0.02 (a drop of at most 0.02)"]


def test_slice_gate_is_off_by_default_and_gates_only_large_enough_slices():
    from pipeline.ops.summary import validation_reasons

    assert _validate(_eval_config(), BISCOE, accuracy=0.5, count=38).validation_ok
    config = _eval_config(slice_min_accuracy=0.8, slice_min_examples=20)
    weak_big = _validate(config, BISCOE, accuracy=0.5, count=38)
    assert not weak_big.validation_ok
    assert validation_reasons(weak_big) == ["island:Biscoe: slice_gate_accuracy = 0.5000, needs >= 0.8"]
    assert _validate(config, TORGERSEN, accuracy=0.5, count=15).validation_ok  # under 20 examples
    assert _validate(config, BISCOE, accuracy=0.9, count=38).validation_ok
    # The overall slice is not a slice gate's business.
    assert _validate(config, OVERALL, accuracy=0.95, count=10).validation_ok


@pytest.mark.parametrize("thresholds, message", [
    ({"slice_min_accuracy": 1.5}, "thresholds.slice_min_accuracy must lie in [0, 1]"),
    ({"slice_min_examples": 0}, "thresholds.slice_min_examples must be at least 1"),
])
def test_slice_gate_settings_are_validated(thresholds, message):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError) as error:
        load_config(overrides={"data_root": DATA_ROOT, "schema_path": SCHEMA_PATH, "thresholds": thresholds})
    assert message in str(error.value)

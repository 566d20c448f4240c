"""`ClassPrecisionRecall` against TFMA's binarized Precision and Recall, which it replaces.

Both run through their TFMA computations (combiners, then derived metrics) on the same examples,
as the Evaluator runs them, with the pipeline's eval config (a candidate and a baseline model).
The examples include scores of exactly 0.5 (not a prediction), a class that is never labelled
and never predicted (NaN), and accumulators merged from two halves, as Beam does.
"""

import math

import numpy as np
import pytest

from pipeline.config import load_config
from tests.conftest import DATA_ROOT, SCHEMA_PATH

NUM_CLASSES = 4  # class 3 never appears: its precision and recall are undefined (NaN)


def _eval_config():
    import tensorflow_model_analysis as tfma

    from pipeline.pipeline import eval_config

    config = load_config(overrides={"data_root": DATA_ROOT, "schema_path": SCHEMA_PATH})
    return tfma.utils.update_eval_config_with_defaults(eval_config(config), has_baseline=True)


def _examples(model_names, count=400, seed=0):
    from tensorflow_model_analysis.metrics import metric_types

    rng = np.random.default_rng(seed)
    examples = []
    for index in range(count):
        predictions = {}
        for name in model_names:
            logits = rng.normal(size=NUM_CLASSES) * 2
            logits[3] = -20.0
            scores = (np.exp(logits) / np.exp(logits).sum()).astype(np.float32)
            if index % 50 == 0:  # exactly on the threshold: not a prediction of the class
                scores = np.array([0.5, 0.25, 0.25, 0.0], dtype=np.float32)
            predictions[name] = scores
        examples.append(metric_types.StandardMetricInputs(
            labels=np.array([rng.integers(0, 3)]), predictions=predictions,
            example_weights=np.array([1.0])))
    return examples


def _run(computations, examples):
    """Metric key -> value, as the Evaluator computes them for one slice."""
    from tensorflow_model_analysis.metrics import metric_types

    results = {}
    for computation in computations:
        if isinstance(computation, metric_types.DerivedMetricComputation):
            results.update(computation.result(results))
            continue
        combiner = computation.combiner
        combiner.setup()
        halves = []
        for part in (examples[: len(examples) // 2], examples[len(examples) // 2:]):
            accumulator = combiner.create_accumulator()
            for example in part:
                accumulator = combiner.add_input(accumulator, example)
            halves.append(accumulator)
        results.update(combiner.extract_output(combiner.merge_accumulators(halves)))
    return results


def test_matches_tfma_binarized_precision_and_recall():
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.metrics import metric_types

    from pipeline.components.class_metrics import ClassPrecisionRecall

    eval_config = _eval_config()
    model_names = [spec.name for spec in eval_config.model_specs]
    examples = _examples(model_names)
    sub_keys = [metric_types.SubKey(class_id=class_id) for class_id in range(NUM_CLASSES)]
    expected = {}
    for metric in (tfma.metrics.Precision(), tfma.metrics.Recall()):
        expected.update(_run(metric.computations(
            eval_config=eval_config, model_names=model_names, output_names=[""], sub_keys=sub_keys),
            examples))
    expected = {key: value for key, value in expected.items() if key.name in ("precision", "recall")}
    actual = _run(ClassPrecisionRecall(class_ids=range(NUM_CLASSES)).computations(
        eval_config=eval_config, model_names=model_names, output_names=[""]), examples)

    assert actual.keys() == expected.keys()
    assert len(actual) == 2 * NUM_CLASSES * len(model_names) == 16
    for key, value in expected.items():
        if key.sub_key.class_id == 3:
            assert math.isnan(value) and math.isnan(actual[key]), key
        else:
            assert 0.0 < value < 1.0 and actual[key] == pytest.approx(value, rel=1e-12), key

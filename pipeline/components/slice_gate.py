"""`SliceGateAccuracy`: a TFMA metric for the Evaluator's opt-in per-slice gate.

`pipeline.pipeline.eval_config` adds it (with a value threshold on the slice keys' slices) when
`thresholds.slice_min_accuracy` is set; TFMA loads it by module and class name. It is the
slice's accuracy when the slice has at least `min_examples` eval examples, and 1.0 otherwise:
TFMA thresholds have no minimum example count, and on a 15-example slice one more wrong
prediction moves accuracy by 6.7 points, so small slices are reported but not gated.
"""

import math
from typing import Any, Dict, List, Optional

from tensorflow_model_analysis.metrics import metric_types

NAME = "slice_gate_accuracy"
ACCURACY = "sparse_categorical_accuracy"
EXAMPLE_COUNT = "example_count"


class SliceGateAccuracy(metric_types.Metric):
    """Accuracy of slices with at least `min_examples` examples; 1.0 (ungated) for smaller ones."""

    def __init__(self, min_examples: int = 30, name: str = NAME):
        super().__init__(_computations, min_examples=min_examples, name=name)


def gated_value(accuracy: Optional[float], example_count: Optional[float], min_examples: int) -> float:
    """What the gate compares with its threshold (NaN, and so a failure, when accuracy is missing)."""
    if example_count is not None and example_count < min_examples:
        return 1.0
    return float(accuracy) if accuracy is not None else math.nan


def _computations(min_examples: int, name: str, eval_config=None, model_names=None,
                  output_names=None, sub_keys=None, example_weighted: bool = False,
                  **unused) -> metric_types.MetricComputations:
    computations: List[metric_types.DerivedMetricComputation] = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                         example_weighted=example_weighted)
            computations.append(metric_types.DerivedMetricComputation(
                keys=[key], result=_result_fn(key, min_examples)))
    return computations


def _result_fn(key: metric_types.MetricKey, min_examples: int):
    def result(metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, float]:
        values = {}
        for other, value in metrics.items():
            # The same model and output, the plain metric (not per class, not a diff to the baseline).
            if (other.model_name == key.model_name and other.output_name == key.output_name
                    and not other.sub_key and not other.is_diff and other.name in (ACCURACY, EXAMPLE_COUNT)):
                values[other.name] = float(value)
        return {key: gated_value(values.get(ACCURACY), values.get(EXAMPLE_COUNT), min_examples)}

    return result

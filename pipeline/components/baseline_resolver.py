"""The Evaluator's baseline: the latest blessed model trained before the candidate.

`pipeline.pipeline.create_pipeline` resolves the Evaluator's `baseline_model` with
`PreviousBlessedModelStrategy`, a TFX `ResolverStrategy`. TFX's own
`LatestBlessedModelStrategy` picks the latest blessed model whatever the candidate is,
so on a re-run with nothing new the cached candidate became its own baseline: the
Evaluator's inputs differed from the first run's, so it ran again (and the edge export,
ServingModel and Pusher after it), comparing a model with itself. Leaving out the
candidate and every model trained after it gives an unchanged re-run the first run's
inputs, so the orchestrator's cache serves the Evaluator and all that follows.

TFX has no option for this (its strategies never see the candidate), hence this class.
Kubeflow Pipelines v2 runs only TFX's built-in strategies (it turns them into its own
metadata queries), so `pipeline.ops.vertex` compiles the resolver with
`LatestBlessedModelStrategy` (`use_builtin_strategy`); Vertex AI then behaves as before.
"""

from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)

BASELINE_RESOLVER_ID = "latest_blessed_model_resolver"
MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
# The Trainer's output in this run: the model the baseline is for.
CANDIDATE_KEY = "candidate"


def previous_blessed_model(models: List[types.Artifact], blessings: List[types.Artifact],
                           candidates: List[types.Artifact]) -> Dict[str, List[types.Artifact]]:
    """The latest blessed model older than the candidate, with its blessing (lists may be empty)."""
    candidate_id = max((c.id for c in candidates), default=None)
    older = [m for m in models if candidate_id is None or m.id < candidate_id]
    resolved = LatestBlessedModelStrategy()._resolve(  # noqa: SLF001 - TFX's own selection
        {MODEL_KEY: older, MODEL_BLESSING_KEY: list(blessings)}, MODEL_KEY, MODEL_BLESSING_KEY)
    return {**resolved, CANDIDATE_KEY: list(candidates)}


class PreviousBlessedModelStrategy(LatestBlessedModelStrategy):
    """LatestBlessedModelStrategy over the models trained before the candidate (module docstring).

    Inputs: `model` and `model_blessing` (every Model and ModelBlessing, as for TFX's strategy)
    and `candidate` (the Trainer's model).
    """

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        return previous_blessed_model(input_dict.get(MODEL_KEY, []), input_dict.get(MODEL_BLESSING_KEY, []),
                                      input_dict.get(CANDIDATE_KEY, []))


def use_builtin_strategy(tfx_pipeline):
    """Gives the baseline resolver TFX's LatestBlessedModelStrategy and its two inputs.

    For Kubeflow Pipelines v2, whose compiler accepts only TFX's built-in strategies.
    The node keeps its id and outputs, so the Evaluator's input needs no rewiring; the
    Trainer stays upstream of it, which only orders the tasks. Returns `tfx_pipeline`.
    """
    from tfx.dsl.components.common import resolver

    for node in tfx_pipeline.components:
        if node.id != BASELINE_RESOLVER_ID:
            continue
        inputs = {k: c for k, c in node.raw_inputs.items() if k != CANDIDATE_KEY}
        builtin = resolver.Resolver(strategy_class=LatestBlessedModelStrategy, **inputs)
        # Private fields: TFX offers no way to change a node's strategy once built.
        node._strategy_class = LatestBlessedModelStrategy  # noqa: SLF001
        node._raw_inputs = builtin.raw_inputs  # noqa: SLF001
        node._input_dict = builtin.inputs  # noqa: SLF001
        node._output_dict = {k: c for k, c in node.outputs.items() if k != CANDIDATE_KEY}  # noqa: SLF001
    return tfx_pipeline

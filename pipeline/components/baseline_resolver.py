"""The pipeline's two model resolvers: the served model, and the Evaluator's baseline.

Both skip a model that was rolled back (`ROLLED_BACK_PROPERTY`, below).

The Evaluator's baseline is the latest blessed model trained before the candidate.

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

The served model (`served_model_resolver`: ModelDecay scores it, the Trainer warm-starts from
it) is the latest blessed model, by `ServedModelStrategy`. After an auto-rollback
(`pipeline.ops.rollback`) moved the `stable` label back, TFX's latest-blessed strategy would
still pick the model just rolled back: it would be warm-started from, scored as the served model
and be the next candidate's baseline. The rollback therefore records itself on that Model artifact
in ML Metadata (custom property `rolled_back` = 1), and both strategies here leave such models
out. The record is on the artifact, not in a file, so every run (and `tfxt runs`) sees it.
On Vertex AI, where only TFX's built-in strategies run, rolled-back models are not skipped
(the watcher and its rollback run on the local orchestrator).
"""

from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)

BASELINE_RESOLVER_ID = "latest_blessed_model_resolver"
SERVED_MODEL_RESOLVER_ID = "served_model_resolver"
# Custom property of a Model artifact: 1 once a rollback moved serving away from it.
ROLLED_BACK_PROPERTY = "rolled_back"
MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
# The Trainer's output in this run: the model the baseline is for.
CANDIDATE_KEY = "candidate"


def is_rolled_back(model: types.Artifact) -> bool:
    """Whether a rollback moved serving away from `model` (`pipeline.ops.rollback` records it)."""
    return (model.has_custom_property(ROLLED_BACK_PROPERTY)
            and model.get_int_custom_property(ROLLED_BACK_PROPERTY) == 1)


def latest_blessed_model(models: List[types.Artifact], blessings: List[types.Artifact]
                         ) -> Dict[str, List[types.Artifact]]:
    """The latest blessed model that was not rolled back, with its blessing (lists may be empty)."""
    usable = [m for m in models if not is_rolled_back(m)]
    return LatestBlessedModelStrategy()._resolve(  # noqa: SLF001 - TFX's own selection
        {MODEL_KEY: usable, MODEL_BLESSING_KEY: list(blessings)}, MODEL_KEY, MODEL_BLESSING_KEY)


def previous_blessed_model(models: List[types.Artifact], blessings: List[types.Artifact],
                           candidates: List[types.Artifact]) -> Dict[str, List[types.Artifact]]:
    """The latest blessed model older than the candidate and not rolled back, with its blessing."""
    candidate_id = max((c.id for c in candidates), default=None)
    older = [m for m in models if candidate_id is None or m.id < candidate_id]
    return {**latest_blessed_model(older, blessings), CANDIDATE_KEY: list(candidates)}


class ServedModelStrategy(LatestBlessedModelStrategy):
    """LatestBlessedModelStrategy without rolled-back models: the model serving is meant to hold.

    Inputs: `model` and `model_blessing`, as for TFX's strategy.
    """

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        return latest_blessed_model(input_dict.get(MODEL_KEY, []), input_dict.get(MODEL_BLESSING_KEY, []))


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
    """Gives both resolvers TFX's LatestBlessedModelStrategy and its two inputs.

    For Kubeflow Pipelines v2, whose compiler accepts only TFX's built-in strategies.
    The node keeps its id and outputs, so the Evaluator's input needs no rewiring; the
    Trainer stays upstream of it, which only orders the tasks. Returns `tfx_pipeline`.
    """
    from tfx.dsl.components.common import resolver

    for node in tfx_pipeline.components:
        if node.id not in (BASELINE_RESOLVER_ID, SERVED_MODEL_RESOLVER_ID):
            continue
        inputs = {k: c for k, c in node.raw_inputs.items() if k != CANDIDATE_KEY}
        builtin = resolver.Resolver(strategy_class=LatestBlessedModelStrategy, **inputs)
        # Private fields: TFX offers no way to change a node's strategy once built.
        node._strategy_class = LatestBlessedModelStrategy  # noqa: SLF001
        node._raw_inputs = builtin.raw_inputs  # noqa: SLF001
        node._input_dict = builtin.inputs  # noqa: SLF001
        node._output_dict = {k: c for k, c in node.outputs.items() if k != CANDIDATE_KEY}  # noqa: SLF001
    return tfx_pipeline

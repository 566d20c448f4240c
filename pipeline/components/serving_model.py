"""`ServingModel`: the trained model, made ready for TF Serving, as a new Model artifact.

TFX's Trainer writes the SavedModel and Pusher copies it, but neither writes TF
Serving's warmup requests, and the Trainer cannot: it sees only transformed
examples, while warmup requests must be raw `tf.Example`s. This component sits
between the Evaluator and the Pusher: it copies the trained model, adds
`assets.extra/tf_serving_warmup_requests` built from real eval examples and
`assets.extra/blessing.json` with the Evaluator's verdict. Pusher pushes this
artifact (it checks only the blessing, not which Model artifact it came with),
so every pushed version carries its warmup requests and its blessing record.
"""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing

WARMUP_EXAMPLES = 8


@component
def ServingModel(  # noqa: N802 - a component name
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    blessing: InputArtifact[ModelBlessing],
    serving_model: OutputArtifact[Model],
    model_name: Parameter[str],
) -> None:
    """Copies `model` to `serving_model` with warmup requests and a blessing record."""
    from tfx.components.util import model_utils
    from tfx.types import artifact_utils
    from tfx.utils import io_utils, path_utils

    from serving import warmup

    source = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    target = path_utils.serving_model_dir(serving_model.uri)
    io_utils.copy_dir(source, target)
    eval_dir = artifact_utils.get_split_uri([examples], "eval")
    warmup.write_warmup(target, list(warmup.read_examples(eval_dir, WARMUP_EXAMPLES)), model_name)
    warmup.write_blessing(target, model_utils.is_model_blessed(blessing), {
        "model_uri": model.uri, "model_id": model.id, "blessing_uri": blessing.uri})

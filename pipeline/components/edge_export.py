"""`EdgeExport`, the custom TFX component that exports blessed models for edge devices.

It runs after the Evaluator (`pipeline.pipeline.create_pipeline` adds it when
`config.edge.enabled`). TFX's own TFLiteRewriter cannot produce an Edge TPU
model (it never sets int8 input/output or TFLITE_BUILTINS_INT8), hence this
component. For a model the Evaluator did not bless it exports nothing and says
so; otherwise it calls `edge.export.export_edge` on the Trainer's model, the
Transform graph and the raw examples, and records the edge blessing on its
`edge_model` output artifact (custom properties `blessed` and `reasons`).
"""


from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.artifact import Artifact
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, TransformGraph


class EdgeModel(Artifact):
    """A folder of edge model variants, preprocessing spec, readiness report and edge blessing."""

    # "<namespace>.<Name>": the form the Kubeflow V2 compiler requires of custom artifact types.
    TYPE_NAME = "tfxt.EdgeModel"


@component
def EdgeExport(  # noqa: N802 - a component name
    model: InputArtifact[Model],
    model_blessing: InputArtifact[ModelBlessing],
    transform_graph: InputArtifact[TransformGraph],
    examples: InputArtifact[Examples],
    edge_model: OutputArtifact[EdgeModel],
    max_accuracy_drop: Parameter[float] = 0.01,
    representative_examples: Parameter[int] = 300,
) -> None:
    """Exports the edge variants of a blessed model, gated by accuracy parity."""
    from tfx.types import artifact_utils
    from tfx.utils import path_utils

    blessing = export_if_blessed(
        model_blessed=model_blessing.get_int_custom_property("blessed") == 1,
        serving_model_dir=path_utils.serving_model_path(model.uri),
        transform_graph_dir=transform_graph.uri,
        train_dir=artifact_utils.get_split_uri([examples], "train"),
        eval_dir=artifact_utils.get_split_uri([examples], "eval"),
        output_dir=edge_model.uri,
        max_accuracy_drop=max_accuracy_drop,
        representative_examples=representative_examples,
    )
    edge_model.set_int_custom_property("blessed", int(bool(blessing["blessed"])))
    edge_model.set_string_custom_property("reasons", "\n".join(blessing["reasons"]))


def export_if_blessed(model_blessed: bool, serving_model_dir: str, transform_graph_dir: str,
                      train_dir: str, eval_dir: str, output_dir: str, max_accuracy_drop: float,
                      representative_examples: int) -> dict:
    """The component's work on plain folders: `export_edge` for a blessed model, else nothing."""
    from edge import parity

    if not model_blessed:
        blessing = {"blessed": False, "skipped": "the Evaluator did not bless the model",
                    "reasons": ["the Evaluator did not bless the model"], "variants": {}}
        parity.write_blessing(blessing, output_dir)
        return blessing
    import tensorflow_transform as tft

    from edge.export import export_edge

    return export_edge(
        saved_model_dir=serving_model_dir,
        tf_transform_output=tft.TFTransformOutput(transform_graph_dir),
        train_rows=parity.read_rows(train_dir, limit=representative_examples),
        eval_rows=parity.read_rows(eval_dir),
        output_dir=output_dir,
        max_accuracy_drop=max_accuracy_drop,
        representative_examples=representative_examples,
    )

"""The parity gate: every edge variant against the SavedModel on the eval split.

`evaluate_variants` runs the SavedModel on raw eval rows (its serving_default
signature, Transform inside) and every other variant on the same rows through
the preprocessing spec, the path a device takes. `edge_blessing` marks a
variant deployable when its accuracy is at most `max_accuracy_drop` below the
SavedModel's; the int8 model must also pass the Edge TPU readiness check. The
edge blessing is "blessed" when the int8 model is deployable. Called by
`edge.export.export_edge`; `format_blessing` is what the run summary and the
CLI print.
"""

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from edge.predict import Predictor, apply_spec
from models import features

REFERENCE = "saved_model"

BLESSING_FILE = "edge_blessing.json"  # the edge blessing, next to the variants


def read_rows(split_dir: str, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """Raw rows (column -> value, None if missing) from an Examples split of gzipped TFRecords."""
    import tensorflow as tf
    from tfx.dsl.io import fileio

    files = sorted(fileio.glob(os.path.join(split_dir, "*")))
    if not files:
        raise FileNotFoundError(f"No TFRecord files in {split_dir}.")
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        row: Dict[str, Any] = {}
        for key, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            value = values[0] if values else None
            row[key] = value.decode() if isinstance(value, bytes) else value
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def saved_model_predictions(saved_model_dir: str, rows: Sequence[Mapping[str, Any]],
                            raw_feature_spec: Mapping[str, Any], serving_signature=None) -> np.ndarray:
    """Class ids the serving model predicts for `rows`, via tf.Examples (serving_default).

    `serving_signature` is that signature of the model already loaded; without it the
    model is loaded from `saved_model_dir`.
    """
    import tensorflow as tf

    from edge.spec import to_example

    if serving_signature is None:
        serving_signature = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    serving_spec = {k: v for k, v in raw_feature_spec.items() if k != features.LABEL_KEY}
    serialized = [to_example(row, serving_spec).SerializeToString() for row in rows]
    scores = serving_signature(examples=tf.constant(serialized))["scores"].numpy()
    return np.argmax(scores, axis=-1)


def frozen_graph_predictions(path: str, vectors: np.ndarray) -> np.ndarray:
    """Class ids of a frozen classifier GraphDef for encoded vectors."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString(open(path, "rb").read())
    inputs = [n.name for n in graph_def.node if n.op == "Placeholder"]
    outputs = [n.name for n in graph_def.node if n.op == "Identity"][-1:]

    def imported():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(imported, [])
    run = wrapped.prune(wrapped.graph.get_tensor_by_name(inputs[0] + ":0"),
                        wrapped.graph.get_tensor_by_name(outputs[0] + ":0"))
    return np.argmax(run(tf.constant(vectors, tf.float32)).numpy(), axis=-1)


def tflite_predictions(path: str, spec: Mapping[str, Any], vectors: np.ndarray) -> np.ndarray:
    """Class ids of a TFLite model (through the device predictor's code) for encoded vectors."""
    predictor = Predictor(path, spec, use_edgetpu="no")
    return np.array([int(np.argmax(predictor.scores(v))) for v in vectors])


def evaluate_variants(paths: Mapping[str, str], spec: Mapping[str, Any],
                      rows: Sequence[Mapping[str, Any]], raw_feature_spec: Mapping[str, Any],
                      serving_signature=None) -> Dict[str, Dict[str, float]]:
    """Accuracy and agreement with the SavedModel of every variant on labelled raw rows.

    `serving_signature`: the reference model's serving_default, if the caller has loaded it.
    """
    labels = np.array([spec["label_names"].index(str(row[features.LABEL_KEY])) for row in rows])
    vectors = np.stack([apply_spec(spec, row) for row in rows])
    predictions = {}
    for name, path in paths.items():
        if name == REFERENCE:
            predictions[name] = saved_model_predictions(path, rows, raw_feature_spec, serving_signature)
        elif path.endswith(".pb"):
            predictions[name] = frozen_graph_predictions(path, vectors)
        else:
            predictions[name] = tflite_predictions(path, spec, vectors)
    reference = predictions[REFERENCE]
    return {name: {"accuracy": float(np.mean(p == labels)), "agreement": float(np.mean(p == reference)),
                   "examples": int(len(rows))}
            for name, p in predictions.items()}


def edge_blessing(results: Mapping[str, Mapping[str, float]], max_accuracy_drop: float,
                  readiness: Optional[Mapping[str, Any]] = None,
                  int8_variant: str = "int8") -> Dict[str, Any]:
    """Which variants are deployable, and whether the int8 model is (the edge blessing).

    A variant is deployable when its accuracy is at most `max_accuracy_drop`
    (absolute: 0.01 = one point) below the SavedModel's; the int8 variant must
    also be Edge TPU ready.
    """
    reference = results[REFERENCE]["accuracy"]
    variants: Dict[str, Dict[str, Any]] = {}
    reasons: List[str] = []
    for name, result in results.items():
        drop = reference - result["accuracy"]
        entry = {**result, "accuracy_drop": drop, "deployable": True, "reason": ""}
        if drop > max_accuracy_drop + 1e-9:
            entry["deployable"] = False
            entry["reason"] = (f"accuracy {result['accuracy']:.3f} is {100 * drop:.1f} points below the "
                               f"SavedModel's {reference:.3f} (allowed: {100 * max_accuracy_drop:.1f})")
        if name == int8_variant and readiness is not None and not readiness.get("ready"):
            entry["deployable"] = False
            entry["reason"] = "; ".join(filter(None, [entry["reason"], "not Edge TPU ready: "
                                                      + "; ".join(readiness.get("problems", [])[:3])]))
        if not entry["deployable"]:
            reasons.append(f"{name}: {entry['reason']}")
        variants[name] = entry
    blessed = int8_variant in variants and variants[int8_variant]["deployable"]
    return {"blessed": blessed, "max_accuracy_drop": max_accuracy_drop, "reference_accuracy": reference,
            "edgetpu_ready": bool(readiness and readiness.get("ready")), "reasons": reasons,
            "variants": variants}


def write_blessing(blessing: Mapping[str, Any], output_dir: str) -> None:
    """edge_blessing.json plus a marker file, EDGE_BLESSED or NOT_EDGE_BLESSED (any `fileio` path)."""
    from tfx.dsl.io import fileio

    fileio.makedirs(output_dir)
    with fileio.open(os.path.join(output_dir, BLESSING_FILE), "w") as f:
        f.write(json.dumps(blessing, indent=2) + "\n")
    for marker in ("EDGE_BLESSED", "NOT_EDGE_BLESSED"):
        if fileio.exists(os.path.join(output_dir, marker)):
            fileio.remove(os.path.join(output_dir, marker))
    with fileio.open(os.path.join(output_dir, "EDGE_BLESSED" if blessing["blessed"] else "NOT_EDGE_BLESSED"),
                     "w") as f:
        f.write("")  # an empty marker; GFile creates the file on its first write


def read_blessing(output_dir: str) -> Optional[Dict[str, Any]]:
    """The edge blessing under an EdgeExport artifact URI (any `fileio` path), or None."""
    from tfx.dsl.io import fileio

    path = os.path.join(output_dir, BLESSING_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as f:
        return json.loads(f.read())


def format_blessing(blessing: Optional[Mapping[str, Any]], location: str = "") -> List[str]:
    """Lines for the run summary and the CLI: per-variant size, accuracy, agreement, verdict."""
    if blessing is None:
        return ["Edge: not exported"]
    if blessing.get("skipped"):
        return [f"Edge: not exported ({blessing['skipped']})"]
    verdict = "yes (int8 model deployable)" if blessing["blessed"] else "no (int8 model NOT deployable)"
    lines = [f"Edge blessed: {verdict}" + (f", in {location}" if location else "")]
    for name, result in blessing["variants"].items():
        size = f"{result['bytes'] / 1024:8.1f} KiB" if "bytes" in result else ""
        lines.append(f"  {name:<14} {size}  accuracy {result['accuracy']:.3f}  agreement "
                     f"{result['agreement']:.3f}  {'deployable' if result['deployable'] else 'REJECTED'}")
    lines += [f"  {reason}" for reason in blessing["reasons"]]
    return lines

"""Edge model variants from a trained model, and the whole edge export.

The serving model's `classifier` layer (models.model.CLASSIFIER_LAYER) maps the
encoded feature vector (z-scored numerics + one-hot categoricals) to class
probabilities. Lookup tables cannot run in an int8 graph, so every converted
variant is that classifier; the device builds its input with the preprocessing
spec (`edge.spec`). Variants, one file each:

- `saved_model/`: the full serving model (raw features in), the reference;
- `frozen_graph.pb`: the classifier as a GraphDef, variables folded into constants;
- `model_float32.tflite`, `model_float16.tflite` (float16 weights),
  `model_dynamic_range.tflite` (int8 weights, float activations);
- `model_int8.tflite`: full-integer, TFLITE_BUILTINS_INT8 only, int8 input and
  output, static batch size 1, calibrated on real transformed training examples:
  the file for the Coral Edge TPU (after `edgetpu_compiler`) and the Raspberry Pi.

`export_edge` is what the pipeline component (`pipeline.components.edge_export`) and the CLI
(`tfxt edge export`) call.
"""

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import numpy as np

from models.model import CLASSIFIER_LAYER

SAVED_MODEL = "saved_model"
FROZEN_GRAPH = "frozen_graph"
TFLITE_VARIANTS = ("float32", "float16", "dynamic_range", "int8")
VARIANT_FILES = {SAVED_MODEL: "saved_model", FROZEN_GRAPH: "frozen_graph.pb",
                 **{v: f"model_{v}.tflite" for v in TFLITE_VARIANTS}}
SPEC_FILE = "preprocessing_spec.json"
READINESS_FILE = "edgetpu_readiness.json"
PREDICTOR_FILE = "predict.py"
REJECTED_DIR = "rejected"


def load_serving_model(saved_model_dir: str):
    """The serving model as Keras loads it; its `signatures` are the SavedModel's own."""
    import tensorflow as tf

    return tf.keras.models.load_model(saved_model_dir, compile=False)


def classifier_of(model, saved_model_dir: str):
    """The Keras classifier (encoded vector -> probabilities) of a loaded serving model."""
    try:
        return model.get_layer(CLASSIFIER_LAYER)
    except ValueError:
        raise ValueError(f"The model in {saved_model_dir} has no '{CLASSIFIER_LAYER}' layer; edge "
                         "export needs a model built by models.model.build_model.") from None


def classifier_function(classifier, batch_size: Optional[int] = 1):
    """A concrete function of the classifier with a fixed input shape [batch_size, features]."""
    import tensorflow as tf

    from pipeline.training import autograph

    autograph.skip_tf_keras_conversion()
    size = int(classifier.input_shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([batch_size, size], tf.float32, name="features")])
    def serve(features):
        return {"scores": classifier(features, training=False)}

    return serve.get_concrete_function()


@contextlib.contextmanager
def native_stderr_quieted() -> Iterator[None]:
    """Holds back what native code writes to file descriptor 2 while the block runs.

    The TFLite converter logs through absl from C++ ("W0000 ... Ignored output_format.",
    "fully_quantize: 0, ..."), and the TFLite interpreter announces "Created TensorFlow Lite
    XNNPACK delegate for CPU."; TF_CPP_MIN_LOG_LEVEL reaches neither and Python cannot
    filter them, so they would break up the pipeline's progress lines on every run. The lines go to
    this module's logger at debug level when the block succeeds, and to the real stderr
    when it raises, so a failed conversion still shows everything the converter said.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", errors="replace")
            if failed:
                sys.stderr.write(text)
                sys.stderr.flush()
            elif text.strip():
                logging.getLogger(__name__).debug("TFLite native output:\n%s", text.rstrip())


@contextlib.contextmanager
def conversion_source(classifier) -> Iterator[str]:
    """A local SavedModel of the classifier at batch size 1, the input of every TFLite conversion.

    `TFLiteConverter.from_concrete_functions([function], classifier)` saves its trackable
    object as a SavedModel and loads it back on every `convert()`; with the Keras layer as
    that object, the save traces every layer's functions again (about 1 s per variant, most
    of the export's time). This module holds only the classifier's variables and the one
    function, and is saved once. The converted files are the same: same ops, tensors,
    weights and quantization parameters (only the converter's metadata names the source).
    """
    import tensorflow as tf

    function = classifier_function(classifier, 1)
    module = tf.Module()
    module.classifier_variables = list(classifier.variables)
    with tempfile.TemporaryDirectory(prefix="edge-classifier-") as directory:
        with native_stderr_quieted():
            tf.saved_model.save(module, directory, signatures={"serving_default": function})
        yield directory


def convert_tflite(source: str, variant: str,
                   representative_vectors: Optional[np.ndarray] = None) -> bytes:
    """The TFLite flatbuffer of `variant` (one of TFLITE_VARIANTS) of the classifier SavedModel
    `source` (from `conversion_source`)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(source)
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if representative_vectors is None or not len(representative_vectors):
            raise ValueError("The int8 variant needs representative (transformed training) vectors.")
        vectors = np.asarray(representative_vectors, dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([v[None, :]] for v in vectors)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant != "float32":
        raise ValueError(f"Unknown TFLite variant {variant!r}: choose one of {TFLITE_VARIANTS}.")
    with native_stderr_quieted():
        return converter.convert()


def freeze_graph(classifier) -> bytes:
    """The classifier as a serialized GraphDef with its variables folded into constants."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(classifier_function(classifier, None))
    return frozen.graph.as_graph_def().SerializeToString()


def copy_saved_model(saved_model_dir: str, output_dir: str) -> str:
    """Copies the serving model into a local `output_dir` (the `saved_model` variant); returns
    the copy's path. `saved_model_dir` may be remote (an artifact URI): it is read through `fileio`."""
    from tfx.utils import io_utils

    path = os.path.join(output_dir, VARIANT_FILES[SAVED_MODEL])
    io_utils.copy_dir(saved_model_dir, path)
    return path


def write_variants(classifier, representative_vectors: np.ndarray, output_dir: str) -> Dict[str, str]:
    """Writes every converted variant into a local `output_dir`, next to the `saved_model` copy
    (`copy_saved_model`); returns variant -> path."""
    from tqdm import tqdm

    os.makedirs(output_dir, exist_ok=True)
    paths = {name: os.path.join(output_dir, filename) for name, filename in VARIANT_FILES.items()}
    # On a terminal only (disable=None), and erased when done (leave=False), so a run's
    # progress lines and logs stay as they were.
    with tqdm(total=1 + len(TFLITE_VARIANTS), unit="variant", desc="edge variants", disable=None,
              leave=False) as progress:
        with open(paths[FROZEN_GRAPH], "wb") as f:
            f.write(freeze_graph(classifier))
        progress.update()
        with conversion_source(classifier) as source:
            for variant in TFLITE_VARIANTS:
                progress.set_postfix_str(variant)
                with open(paths[variant], "wb") as f:
                    f.write(convert_tflite(source, variant, representative_vectors))
                progress.update()
    return paths


def size_bytes(path: str) -> int:
    """Size of a file, or of everything under a directory."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names)
    return os.path.getsize(path)


def export_edge(saved_model_dir: str, tf_transform_output, train_rows: Sequence[Mapping[str, Any]],
                eval_rows: Sequence[Mapping[str, Any]], output_dir: str,
                max_accuracy_drop: float = 0.01, representative_examples: int = 300) -> Dict[str, Any]:
    """Spec, variants, readiness report, parity and edge blessing, all written to `output_dir`.

    Variants that fail the parity gate are moved to `output_dir/rejected/`, so
    the top level holds only deployable files. Returns the edge blessing (also
    written to edge_blessing.json). `output_dir` may be on any filesystem TFX's
    `fileio` reaches (gs:// on Vertex): the TFLite converter and interpreter work
    on local files, so the export is built in a local folder and then copied.
    """
    with tempfile.TemporaryDirectory(prefix="edge-export-") as work_dir:
        blessing = _export_into(work_dir, saved_model_dir, tf_transform_output, train_rows, eval_rows,
                                max_accuracy_drop, representative_examples)
        publish(work_dir, output_dir)
    return blessing


def publish(local_dir: str, output_dir: str) -> None:
    """Copies every file under `local_dir` into `output_dir` (any `fileio` filesystem), replacing
    files of the same name and leaving others; not `io_utils.copy_dir`, which deletes `output_dir`
    first (here it may be a folder the user named)."""
    from tfx.dsl.io import fileio

    for directory, _, names in fileio.walk(local_dir):
        relative = os.path.relpath(directory, local_dir)
        target = output_dir if relative == "." else os.path.join(output_dir, relative)
        fileio.makedirs(target)
        for name in names:
            fileio.copy(os.path.join(directory, name), os.path.join(target, name), overwrite=True)


def _export_into(output_dir: str, saved_model_dir: str, tf_transform_output,
                 train_rows: Sequence[Mapping[str, Any]], eval_rows: Sequence[Mapping[str, Any]],
                 max_accuracy_drop: float, representative_examples: int) -> Dict[str, Any]:
    """`export_edge`'s work, in a local `output_dir`."""
    from edge import parity, readiness
    from edge import spec as spec_lib

    spec = spec_lib.build_spec(tf_transform_output)
    spec_lib.write_spec(spec, os.path.join(output_dir, SPEC_FILE))
    shutil.copyfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "predict.py"),
                    os.path.join(output_dir, PREDICTOR_FILE))
    representative_rows = list(train_rows)[:representative_examples]
    representative = spec_lib.encode_transformed(
        spec, spec_lib.transform_rows(tf_transform_output, representative_rows))
    # The exported copy is loaded, once: its classifier is converted, and its own
    # serving_default signature is the parity gate's reference (a second load cost about 2 s).
    saved_model_copy = copy_saved_model(saved_model_dir, output_dir)
    serving_model = load_serving_model(saved_model_copy)
    classifier = classifier_of(serving_model, saved_model_dir)
    if int(classifier.input_shape[-1]) != spec["feature_vector_size"]:
        raise spec_lib.SpecError(
            f"The model takes {int(classifier.input_shape[-1])} features but the Transform output "
            f"encodes {spec['feature_vector_size']}: they come from different runs.")
    paths = write_variants(classifier, representative, output_dir)
    report = readiness.check_edgetpu_readiness(paths["int8"])
    readiness.write_report(report, os.path.join(output_dir, READINESS_FILE))
    # Quieted: the TFLite interpreter announces its XNNPACK delegate on stderr from C++.
    with native_stderr_quieted():
        results = parity.evaluate_variants(paths, spec, eval_rows, tf_transform_output.raw_feature_spec(),
                                           serving_model.signatures["serving_default"])
    blessing = parity.edge_blessing(results, max_accuracy_drop, report)
    for name, result in blessing["variants"].items():
        result["path"] = VARIANT_FILES[name]
        result["bytes"] = size_bytes(paths[name])
        if not result["deployable"]:
            os.makedirs(os.path.join(output_dir, REJECTED_DIR), exist_ok=True)
            shutil.move(paths[name], os.path.join(output_dir, REJECTED_DIR, VARIANT_FILES[name]))
            result["path"] = os.path.join(REJECTED_DIR, VARIANT_FILES[name])
    blessing["representative_examples"] = len(representative_rows)
    parity.write_blessing(blessing, output_dir)
    return blessing

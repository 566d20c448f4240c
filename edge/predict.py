#!/usr/bin/env python3
"""Device-side predictor: a standalone script for a Raspberry Pi or a Coral board.

Copy this file, a `.tflite` model and `preprocessing_spec.json` to the device, then:

    python3 predict.py --model model_int8.tflite --spec preprocessing_spec.json rows.csv
    python3 predict.py --model model_int8_edgetpu.tflite --spec preprocessing_spec.json rows.json

It reads raw rows (CSV with a header, a JSON list of objects, or JSON lines; `-`
is stdin), applies the preprocessing spec exactly as the pipeline's Transform
graph does, runs the model and prints one JSON line per row.

It depends on numpy and one TFLite interpreter: `ai_edge_litert` or
`tflite_runtime` (whichever installs on the device), else `tf.lite` where
TensorFlow is present. When `libedgetpu` is installed, the Edge TPU delegate is
used. The pipeline (`edge.spec`, `edge.parity`) imports `apply_spec` from here,
so the device and the pipeline share one implementation of the preprocessing.
"""

import argparse
import csv
import io
import json
import math
import sys

import numpy as np

SPEC_FORMAT_VERSION = 1
EDGETPU_LIBRARIES = ("libedgetpu.so.1", "libedgetpu.1.dylib", "edgetpu.dll")


class SpecError(ValueError):
    """The spec, the model or a row do not fit together; the message says how."""


def load_spec(path):
    """Reads and checks a preprocessing spec JSON file."""
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        raise SpecError(f"Cannot read the preprocessing spec {path}: {e}") from None
    check_spec(spec)
    return spec


def check_spec(spec):
    """Raises SpecError if `spec` lacks a part the preprocessing needs."""
    if spec.get("format_version") != SPEC_FORMAT_VERSION:
        raise SpecError(f"Preprocessing spec format_version {spec.get('format_version')!r} is not "
                        f"{SPEC_FORMAT_VERSION}; export the spec again with this predict.py.")
    for feature in spec.get("numeric", []):
        for field in ("name", "mean", "std"):
            if field not in feature:
                raise SpecError(f"Numeric feature {feature.get('name', '?')!r} in the spec has no {field!r}.")
    for feature in spec.get("categorical", []):
        if not feature.get("vocabulary"):
            raise SpecError(f"Categorical feature {feature.get('name', '?')!r} in the spec has no "
                            "vocabulary; export the spec again from the Transform output.")
        if feature.get("num_oov_buckets", 1) != 1:
            raise SpecError(f"Categorical feature {feature['name']!r} has "
                            f"{feature['num_oov_buckets']} OOV buckets; only 1 is supported.")
    if not spec.get("label_names"):
        raise SpecError("The preprocessing spec has no label_names.")
    size = feature_vector_size(spec)
    if spec.get("feature_vector_size", size) != size:
        raise SpecError(f"The spec says feature_vector_size {spec['feature_vector_size']} but its "
                        f"features give {size}.")


def feature_vector_size(spec):
    """Length of the encoded vector: one per numeric, vocabulary + OOV per categorical."""
    return len(spec.get("numeric", [])) + sum(
        len(f["vocabulary"]) + f.get("num_oov_buckets", 1) for f in spec.get("categorical", []))


def apply_spec(spec, raw_row):
    """The model's float32 input vector for one raw row (a mapping column -> value).

    Same steps as the Transform graph: a missing numeric (None, "" or NaN) is
    imputed with the training mean, i.e. 0 after z-scoring; a missing
    categorical becomes the spec's missing value; an unseen category goes to the
    out-of-vocabulary bucket; categoricals are one-hot encoded.
    """
    vector = np.zeros(feature_vector_size(spec), dtype=np.float32)
    for position, feature in enumerate(spec.get("numeric", [])):
        value = _number(raw_row.get(feature["name"]), feature["name"])
        if value is None:
            continue
        if feature.get("dtype") == "int":
            value = float(round(value))
        vector[position] = (np.float32(value) - np.float32(feature["mean"])) / np.float32(feature["std"])
    offset = len(spec.get("numeric", []))
    for feature in spec.get("categorical", []):
        value = raw_row.get(feature["name"])
        value = "" if value is None else str(value)
        if value == "":
            value = feature["missing_value"]
        vocabulary = feature["vocabulary"]
        index = vocabulary.index(value) if value in vocabulary else len(vocabulary)
        vector[offset + index] = 1.0
        offset += len(vocabulary) + feature.get("num_oov_buckets", 1)
    return vector


def _number(value, name):
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"Column {name!r} must be a number, got {value!r}.") from None
    return None if math.isnan(number) else number


def _interpreter_module():
    for name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return __import__(name, fromlist=["Interpreter"])
        except ImportError:
            continue
    try:
        import tensorflow as tf
    except ImportError:
        raise SpecError("No TFLite interpreter found: pip install ai-edge-litert "
                        "(or tflite-runtime on older boards).") from None
    return tf.lite


def make_interpreter(model_path, use_edgetpu="auto"):
    """A TFLite interpreter for `model_path`, with the Edge TPU delegate if available.

    Args:
      use_edgetpu: "auto" (use libedgetpu when it loads), "yes" (require it) or "no".
    Returns:
      (interpreter, delegate_name or None)
    """
    module = _interpreter_module()
    delegates, used = [], None
    if use_edgetpu != "no":
        for library in EDGETPU_LIBRARIES:
            try:
                delegates = [module.load_delegate(library)]
                used = library
                break
            except (ValueError, OSError, AttributeError):
                continue
        if not delegates and use_edgetpu == "yes":
            raise SpecError("libedgetpu is not installed or no Edge TPU is attached "
                            "(see https://coral.ai/docs/accelerator/get-started/).")
    try:
        interpreter = module.Interpreter(model_path=model_path, experimental_delegates=delegates)
    except ValueError as e:
        raise SpecError(f"Cannot load the model {model_path}: {e}") from None
    interpreter.allocate_tensors()
    return interpreter, used


class Predictor:
    """Runs one TFLite model on raw rows through a preprocessing spec."""

    def __init__(self, model_path, spec, use_edgetpu="auto"):
        self.spec = spec
        self.interpreter, self.delegate = make_interpreter(model_path, use_edgetpu)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        size = feature_vector_size(spec)
        if int(self.input["shape"][-1]) != size:
            raise SpecError(f"Model {model_path} takes {int(self.input['shape'][-1])} features but the "
                            f"spec encodes {size}: the model and the spec come from different exports.")
        classes = int(self.output["shape"][-1])
        if classes != len(spec["label_names"]):
            raise SpecError(f"Model {model_path} predicts {classes} classes but the spec names "
                            f"{len(spec['label_names'])}: the model and the spec do not match.")
        # Built once: per call, numpy's small-array overhead (not the model) is what an int8
        # model costs on a CPU, so each row should pay as few numpy calls as possible.
        self._quantize = quantizer(self.input)
        self._dequantize = dequantizer(self.output)

    def scores(self, vector):
        """Class probabilities (float32) for one encoded vector."""
        batch = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        self.interpreter.set_tensor(self.input["index"], self._quantize(batch))
        self.interpreter.invoke()
        return self._dequantize(self.interpreter.get_tensor(self.output["index"]))[0]

    def predict(self, raw_row):
        """{"class": name, "class_id": id, "scores": {name: probability}} for one raw row."""
        scores = self.scores(apply_spec(self.spec, raw_row))
        class_id = int(np.argmax(scores))
        names = self.spec["label_names"]
        # No zip(strict=): the script must run on the Python 3.7-3.9 of older boards.
        return {"class": names[class_id], "class_id": class_id,
                "scores": {name: round(float(s), 6) for name, s in zip(names, scores)}}  # noqa: B905


def quantizer(details):
    """A function float32 array -> the model input's dtype, with the tensor's scale and zero point.

    Rounds half to even and saturates at the dtype's bounds, like
    `np.clip(np.round(values / scale + zero_point), min, max)`, with the constants
    computed once instead of per call.
    """
    dtype = details["dtype"]
    if dtype == np.float32:
        return lambda values: values
    scale, zero_point = details["quantization"]
    scale, zero_point = np.float32(scale), np.float32(zero_point)
    info = np.iinfo(dtype)
    low, high = np.float32(info.min), np.float32(info.max)

    def quantize(values):
        # np.minimum/np.maximum, not np.clip: np.clip's Python wrapper costs more than the model.
        return np.minimum(np.maximum(np.rint(values / scale + zero_point), low), high).astype(dtype)

    return quantize


def dequantizer(details):
    """A function model output -> float32 array: `(values - zero_point) * scale`.

    An 8-bit output has 256 possible values, so they are computed once into a table and
    looked up; wider integer outputs are computed per call.
    """
    dtype = details["dtype"]
    if dtype == np.float32:
        return lambda values: values
    scale, zero_point = details["quantization"]
    scale, zero_point = np.float32(scale), np.float32(zero_point)
    if np.dtype(dtype).itemsize != 1:
        return lambda values: (values.astype(np.float32) - zero_point) * scale
    # Index by the byte's unsigned value, so int8 and uint8 outputs share one path.
    table = (np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32) - zero_point) * scale
    return lambda values: table[values.view(np.uint8)]


def read_rows(text):
    """Raw rows from CSV (with a header) or JSON (a list of objects, one object, or JSON lines)."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = [json.loads(line) for line in stripped.splitlines() if line.strip()]
        rows = data if isinstance(data, list) else [data]
        if not all(isinstance(row, dict) for row in rows):
            raise SpecError("JSON input must be objects mapping column names to values.")
        return rows
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the .tflite model")
    parser.add_argument("--spec", required=True, help="preprocessing_spec.json")
    parser.add_argument("--edgetpu", choices=("auto", "yes", "no"), default="auto",
                        help="use the Edge TPU delegate (default: when libedgetpu loads)")
    parser.add_argument("input", nargs="?", default="-", help="CSV or JSON file of raw rows (- = stdin)")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        predictor = Predictor(args.model, spec, args.edgetpu)
        if args.input == "-":
            text = sys.stdin.read()
        else:
            with open(args.input) as f:
                text = f.read()
        for row in read_rows(text):
            print(json.dumps(predictor.predict(row)))
    except (SpecError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"delegate: {predictor.delegate or 'none (CPU)'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

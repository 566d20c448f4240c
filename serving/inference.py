"""One loaded model version and the three TF Serving inference APIs on it.

`predict`, `classify` and `regress` check a request against the SignatureDef
the way TF Serving does (signature key, input names, dtypes, classify/regress
input and output shapes) and answer with the same error codes and messages, so
the REST and gRPC front ends of the local server only translate payloads.
"""

import dataclasses
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import grpc
import numpy as np

from serving.errors import ServingError, from_tf_error

log = logging.getLogger(__name__)

INIT_OP = "__saved_model_init_op"


@dataclasses.dataclass
class LoadedVersion:
    """A servable: one version of one model, loaded and warmed up."""

    name: str
    version: int
    path: str
    signature_defs: Mapping[str, Any]  # signature key -> SignatureDef proto
    functions: Mapping[str, Any]  # signature key -> concrete function
    model: Any  # keeps the loaded SavedModel's variables alive
    # signature key -> `batchable`, worked out once: it is asked on every request.
    _batchable: Dict[str, bool] = dataclasses.field(default_factory=dict, init=False, repr=False,
                                                    compare=False)

    @classmethod
    def load(cls, name: str, version: int, path: str, warmup: bool = True) -> "LoadedVersion":
        """Loads the SavedModel at `path` and replays its warmup requests.

        Raises whatever loading or a failing warmup request raises; the model
        store then reports the version as failed instead of serving it.
        """
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        saved_model = saved_model_pb2.SavedModel()
        with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
            saved_model.ParseFromString(f.read())
        signature_defs = {k: v for k, v in saved_model.meta_graphs[0].signature_def.items()
                          if k != INIT_OP}
        model = tf.saved_model.load(path)
        functions = {k: model.signatures[k] for k in signature_defs if k in model.signatures}
        loaded = cls(name, version, path, signature_defs, functions, model)
        if warmup:
            loaded.replay_warmup()
        return loaded

    def replay_warmup(self) -> int:
        """Runs the version's warmup requests, as TF Serving does before serving it.

        Then every signature the warmup requests left out is called once with a
        placeholder input (`_placeholder_inputs`), so that no signature's first
        real request pays for instantiating its graph. Returns the number of
        warmup requests replayed.
        """
        import tensorflow as tf

        from serving.warmup import read_warmup

        count = 0
        called = set()
        for record in read_warmup(self.path):
            kind = record.WhichOneof("log_type")
            if kind == "predict_log":
                request = record.predict_log.request
                signature_name = request.model_spec.signature_name or "serving_default"
                self.predict(signature_name, {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
            elif kind == "classify_log":
                request = record.classify_log.request
                signature_name = request.model_spec.signature_name or "serving_default"
                self.classify(signature_name,
                              [e.SerializeToString() for e in request.input.example_list.examples])
            else:
                continue
            called.add(signature_name)
            count += 1
        for signature_name in sorted(set(self.functions) - called):
            try:
                self.predict(signature_name, _placeholder_inputs(self.signature_defs[signature_name]))
            except ServingError as e:
                # The graph ran (or was refused by one of its ops) either way: that is the warming.
                log.debug("Warmup call of %s refused: %s", signature_name, e.message)
        return count

    def signature(self, signature_name: str):
        signature_name = signature_name or "serving_default"
        if signature_name not in self.signature_defs or signature_name not in self.functions:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{signature_name}" not found.')
        return self.signature_defs[signature_name], self.functions[signature_name]

    def predict(self, signature_name: str, inputs: Mapping[str, np.ndarray],
                output_filter: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
        """The Predict API: named input arrays -> named output arrays."""
        function, tensors, wanted = self.prepare(signature_name, inputs, output_filter)
        return self.call(function, tensors, wanted)

    def prepare(self, signature_name: str, inputs: Mapping[str, np.ndarray],
                output_filter: Optional[List[str]] = None) -> Tuple[Any, Dict[str, Any], List[str]]:
        """Checks a Predict request against the signature, as TF Serving does, before any model call.

        Returns the signature's function, the inputs (tensors of its dtypes, or
        numpy arrays that are already of them) and the output names to return
        (None: all). Raises INVALID_ARGUMENT for a
        request the model cannot take, so that `serving.batching` refuses it alone.
        """
        import tensorflow as tf

        signature_def, function = self.signature(signature_name)
        expected = set(signature_def.inputs)
        sent = set(inputs)
        if sent != expected:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{', '.join(sorted(sent))}}}) != len({{{', '.join(sorted(expected))}}}). "
                f"Sent extra: {{{', '.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{', '.join(sorted(expected - sent))}}}."))
        tensors = {}
        for key, value in inputs.items():
            dtype = tf.dtypes.as_dtype(signature_def.inputs[key].dtype)
            if _takes_as_is(value, dtype):
                # The function converts it when called: once per merged batch, not per request.
                tensors[key] = value
                continue
            try:
                tensors[key] = tf.convert_to_tensor(value, dtype=dtype)
            except (TypeError, ValueError, tf.errors.OpError):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Expects arg[{key}] to be {dtype.name} but "
                                   f"{np.asarray(value).dtype} is provided") from None
        for name in output_filter or []:
            if name not in signature_def.outputs:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"output tensor alias not found in signature: {name}")
        return function, tensors, list(output_filter) if output_filter else None

    @staticmethod
    def call(function, tensors: Mapping[str, Any], wanted: Optional[List[str]]) -> Dict[str, np.ndarray]:
        """Runs a prepared request (`prepare`); the model's own errors become TF Serving's."""
        try:
            outputs = function(**tensors)
        except Exception as e:  # noqa: BLE001 - report the model's own error to the caller
            raise from_tf_error(e) from None
        return {name: outputs[name].numpy() for name in wanted or list(outputs)}

    def batchable(self, signature_name: str) -> bool:
        """Whether every input and output of the signature has a batch dimension (dim 0 of -1).

        Only such a signature's requests may be merged along dim 0 and split back
        by rows (`serving.batching`); others run one request per call.
        """
        signature_name = signature_name or "serving_default"
        known = self._batchable.get(signature_name)
        if known is None:
            signature_def = self.signature_defs.get(signature_name)
            known = signature_def is not None and all(
                not info.tensor_shape.unknown_rank and info.tensor_shape.dim
                and info.tensor_shape.dim[0].size == -1
                for info in list(signature_def.inputs.values()) + list(signature_def.outputs.values()))
            self._batchable[signature_name] = known
        return known

    def classify(self, signature_name: str, examples: List[bytes]) -> Tuple[np.ndarray, np.ndarray]:
        """The Classify API: serialized tf.Examples -> (classes [N, K], scores [N, K])."""
        signature_def, _ = self.signature(signature_name)
        input_key = self._single_string_input(signature_def, "classification")
        if not {"classes", "scores"} & set(signature_def.outputs) or not set(
                signature_def.outputs) <= {"classes", "scores"}:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "Expected one or two output Tensors, found "
                               f"{len(signature_def.outputs)}; outputs must be named classes and/or scores")
        outputs = self.predict(signature_name, {input_key: np.asarray(examples, dtype=object)})
        scores = outputs.get("scores")
        classes = outputs.get("classes")
        return classes, scores

    def regress(self, signature_name: str, examples: List[bytes]) -> np.ndarray:
        """The Regress API: serialized tf.Examples -> one value per example."""
        signature_def, _ = self.signature(signature_name)
        input_key = self._single_string_input(signature_def, "regression")
        if list(signature_def.outputs) != ["outputs"]:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Expected one output Tensor named outputs, found "
                               f"{sorted(signature_def.outputs)}")
        outputs = self.predict(signature_name, {input_key: np.asarray(examples, dtype=object)})
        return np.reshape(outputs["outputs"], [-1])

    @staticmethod
    def _single_string_input(signature_def, api: str) -> str:
        from tensorflow.core.framework import types_pb2

        if len(signature_def.inputs) != 1:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Expected one input Tensor for {api}, found {len(signature_def.inputs)}")
        key, tensor = next(iter(signature_def.inputs.items()))
        if tensor.dtype != types_pb2.DT_STRING:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"The {api} input must be a string Tensor of serialized tf.Examples")
        return key


def _takes_as_is(value, dtype) -> bool:
    """Whether `value` is a numpy array that converts to `dtype` for sure: its own dtype, or strings."""
    if not isinstance(value, np.ndarray) or value.ndim == 0:
        return False
    if dtype.is_numpy_compatible and dtype.name != "string":
        return value.dtype == dtype.as_numpy_dtype
    return dtype.name == "string" and value.dtype == object and all(
        isinstance(v, bytes) for v in value.reshape(-1))


def _placeholder_inputs(signature_def) -> Dict[str, np.ndarray]:
    """One-row inputs of each declared dtype and shape: empty strings or zeros."""
    import tensorflow as tf

    inputs = {}
    for key, tensor_info in signature_def.inputs.items():
        dims = tensor_info.tensor_shape.dim
        shape = [1] if tensor_info.tensor_shape.unknown_rank else [max(d.size, 1) for d in dims]
        dtype = tf.dtypes.as_dtype(tensor_info.dtype)
        inputs[key] = (np.full(shape, b"", dtype=object) if dtype == tf.string
                       else np.zeros(shape, dtype=dtype.as_numpy_dtype))
    return inputs

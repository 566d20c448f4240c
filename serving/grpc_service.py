"""TF Serving's gRPC API (port 8500) for the local server.

Implements tensorflow-serving-api's `PredictionService` (Predict, Classify,
Regress, GetModelMetadata) and `ModelService` (GetModelStatus,
HandleReloadConfigRequest) on a grpcio server, so the stock
`prediction_service_pb2_grpc.PredictionServiceStub` talks to it unchanged.
Errors abort the call with the status code TF Serving uses. MultiInference and
SessionService are not implemented (UNIMPLEMENTED). The servicers are plain
methods; `asynchronous` serves them on a grpc.aio server (`serving.server`).
"""

import asyncio
import time

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import tensors
from serving.errors import ServingError


def predict_inputs(protos, signature_def):
    """Input arrays of a PredictRequest, each of exactly the dtype its signature declares.

    TF Serving converts nothing: a float64 or int32 tensor for a float32 input is
    INVALID_ARGUMENT ("Expects arg[i] to be float but double is provided"), and so
    is a TensorProto whose content does not fit its shape.
    """
    order = sorted(signature_def.inputs)
    inputs = {}
    for key, proto in protos.items():
        expected = signature_def.inputs.get(key)
        if expected is not None and proto.dtype != expected.dtype:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                f"Expects arg[{order.index(key)}] to be {tensors.dtype_name(expected.dtype)} but "
                f"{tensors.dtype_name(proto.dtype)} is provided"))
        try:
            inputs[key] = tensors.to_ndarray(proto)
        except tensors.MalformedTensor as e:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Input {key} is not a valid TensorProto: {e}") from None
    return inputs


def resolve(app, model_spec):
    """The loaded version a ModelSpec asks for (by version, label, or the latest)."""
    choice = model_spec.WhichOneof("version_choice")
    return app.store.resolve(
        model_spec.name,
        version=model_spec.version.value if choice == "version" else None,
        label=model_spec.version_label if choice == "version_label" else None)


def _examples(request_input):
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return list(request_input.example_list.examples)
    if kind == "example_list_with_context":
        merged = []
        for example in request_input.example_list_with_context.examples:
            combined = type(example)()
            combined.CopyFrom(request_input.example_list_with_context.context)
            combined.MergeFrom(example)
            merged.append(combined)
        return merged
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Input is empty")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, app):
        self.app = app

    def _call(self, method, request, context, handler):
        started = time.perf_counter()
        try:
            return handler(started)
        except ServingError as e:
            self.app.metrics.count(request.model_spec.name, method, e.code.name)
            self.app.request_log.write("grpc", method, request.model_spec.name, None,
                                       request.model_spec.signature_name or None, e.code.name, started)
            context.abort(e.code, e.message)

    def Predict(self, request, context):  # noqa: N802 - the proto's method names
        def handle(started):
            loaded = resolve(self.app, request.model_spec)
            signature_name = request.model_spec.signature_name or "serving_default"
            signature_def, _ = loaded.signature(signature_name)
            inputs = predict_inputs(request.inputs, signature_def)
            outputs = self.app.batcher.predict(loaded, signature_name, inputs, list(request.output_filter))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = loaded.name
            response.model_spec.version.value = loaded.version
            response.model_spec.signature_name = signature_name
            for key, value in outputs.items():
                tensors.to_tensor_proto(value, response.outputs[key])
            self.app.metrics.count(loaded.name, "predict", "OK", time.perf_counter() - started)
            self.app.request_log.write("grpc", "predict", loaded.name, loaded.version, signature_name,
                                       "OK", started, inputs, outputs)
            return response

        return self._call("predict", request, context, handle)

    def Classify(self, request, context):  # noqa: N802
        def handle(started):
            loaded = resolve(self.app, request.model_spec)
            signature_name = request.model_spec.signature_name or "serving_default"
            serialized = [e.SerializeToString() for e in _examples(request.input)]
            classes, scores = loaded.classify(signature_name, serialized)
            response = classification_pb2.ClassificationResponse()
            response.model_spec.name = loaded.name
            response.model_spec.version.value = loaded.version
            response.model_spec.signature_name = signature_name
            for i in range(len(serialized)):
                classification = response.result.classifications.add()
                for j in range(len(scores[i]) if scores is not None else len(classes[i])):
                    classification.classes.add(
                        label=classes[i][j].decode() if classes is not None else str(j),
                        score=float(scores[i][j]) if scores is not None else 0.0)
            self.app.metrics.count(loaded.name, "classify", "OK", time.perf_counter() - started)
            self.app.request_log.write("grpc", "classify", loaded.name, loaded.version, signature_name,
                                       "OK", started, {"examples": np.asarray(serialized, dtype=object)},
                                       {"classes": classes, "scores": scores})
            return response

        return self._call("classify", request, context, handle)

    def Regress(self, request, context):  # noqa: N802
        def handle(started):
            loaded = resolve(self.app, request.model_spec)
            signature_name = request.model_spec.signature_name or "serving_default"
            serialized = [e.SerializeToString() for e in _examples(request.input)]
            values = loaded.regress(signature_name, serialized)
            response = regression_pb2.RegressionResponse()
            response.model_spec.name = loaded.name
            response.model_spec.version.value = loaded.version
            response.model_spec.signature_name = signature_name
            for value in values:
                response.result.regressions.add(value=float(value))
            return response

        return self._call("regress", request, context, handle)

    def GetModelMetadata(self, request, context):  # noqa: N802
        def handle(started):
            if not request.metadata_field:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "GetModelMetadataRequest must specify at least one metadata_field")
            unsupported = [f for f in request.metadata_field if f != "signature_def"]
            if unsupported:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Metadata field {unsupported[0]} is not supported")
            loaded = resolve(self.app, request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = loaded.name
            response.model_spec.version.value = loaded.version
            response.metadata["signature_def"].Pack(signature_def_map(loaded))
            return response

        return self._call("metadata", request, context, handle)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, app):
        self.app = app

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            return model_status(self.app, request.model_spec)
        except ServingError as e:
            context.abort(e.code, e.message)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        self.app.store.apply_config(request.config)
        response = model_management_pb2.ReloadConfigResponse()
        if self.app.store.last_error:
            response.status.error_code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            response.status.error_message = self.app.store.last_error
        return response


def signature_def_map(loaded):
    result = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in loaded.signature_defs.items():
        result.signature_def[key].CopyFrom(signature_def)
    return result


def model_status(app, model_spec):
    """GetModelStatusResponse for a ModelSpec (all versions, or the one it names)."""
    choice = model_spec.WhichOneof("version_choice")
    rows = app.store.status(model_spec.name,
                            version=model_spec.version.value if choice == "version" else None,
                            label=model_spec.version_label if choice == "version_label" else None)
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state, message in rows:
        status = response.model_version_status.add(version=version)
        status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        status.status.SetInParent()  # TF Serving always reports it, "OK" included
        if message:
            status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            status.status.error_message = message
    return response


# After two calls overlapped, how long every call runs in the pool (see `asynchronous`).
OVERLAP_SECONDS = 0.05


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code, self.details = code, details


class _Context:
    """What the servicers use of a grpc.ServicerContext: `abort` raises, for `asynchronous` to send."""

    def abort(self, code: grpc.StatusCode, details: str):
        raise _Aborted(code, details)


def asynchronous(servicer, servicer_class, pool, in_pool=()):
    """`servicer`'s methods as the coroutines a grpc.aio server calls.

    Why grpc.aio and not grpcio's thread-pool server: that one hands every call
    from its polling thread to a worker thread, which cost about 0.3 ms a call
    here and made gRPC slower than REST. Here a call runs on the thread that
    polls for it when it is the only one in flight and none overlapped in the
    last OVERLAP_SECONDS; otherwise (several clients) it runs in `pool`, so that
    model calls run in parallel and concurrent Predict calls merge.
    Methods named in `in_pool` (slow ones, such as a config reload that loads
    models) always run in `pool`; methods `servicer` does not define answer
    UNIMPLEMENTED.
    """
    # Calls in flight, and when two last overlapped (time.monotonic()).
    in_flight, overlapped = [0], [float("-inf")]

    async def run(bound, request, slow):
        in_flight[0] += 1
        try:
            await asyncio.sleep(0)  # lets calls that arrived with this one count themselves
            if in_flight[0] > 1:
                overlapped[0] = time.monotonic()
            # A call running here blocks the loop: the calls that arrive meanwhile wait
            # unread, and cannot join its batch (serving.batching). So once calls overlap,
            # all go to `pool` for a while (OVERLAP_SECONDS), where they merge.
            if slow or time.monotonic() - overlapped[0] < OVERLAP_SECONDS:
                return await asyncio.get_running_loop().run_in_executor(pool, bound, request, _Context())
            return bound(request, _Context())
        finally:
            in_flight[0] -= 1

    adapter = type(f"Async{servicer_class.__name__}", (servicer_class,), {})
    for name, member in vars(servicer_class).items():
        if name.startswith("_") or not callable(member):
            continue
        bound = getattr(servicer, name) if name in vars(type(servicer)) else None

        async def method(self, request, context, bound=bound, slow=name in in_pool):
            if bound is None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
            try:
                return await run(bound, request, slow)
            except _Aborted as e:
                await context.abort(e.code, e.details)

        setattr(adapter, name, method)
    return adapter()

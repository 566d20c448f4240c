"""REST and gRPC clients for TF Serving (and the local server, which speaks the same APIs).

Both clients offer the same methods:

    client = GrpcClient("penguin", port=8500)        # or RestClient("penguin", port=8501)
    client.predict([{"island": "Biscoe", "bill_length_mm": 45.1, ...}], label="stable")
    client.classify([tf_example, ...], version=1795860489)
    client.status(); client.metadata()

`predict` sends raw feature rows to the `serving_raw` signature (a missing
value may be None or left out); `classify` sends `tf.train.Example`s (or raw
rows, converted) to `serving_default`. Choose the version by `version=` number
or `label=`; neither means the newest served version, as in TF Serving.
The gRPC client uses tensorflow-serving-api's PredictionService and
ModelService stubs; the REST client uses only the standard library.
"""

import dataclasses
import http.client
import json
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from serving import payloads


class ServingClientError(RuntimeError):
    """The server answered with an error; `code` is the gRPC code name, `http_status` the HTTP one."""

    def __init__(self, code: str, message: str, http_status: Optional[int] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


@dataclasses.dataclass
class Prediction:
    """Per-row outputs; `version` is the version that answered (gRPC reports it, REST does not)."""

    rows: List[Dict[str, Any]]
    version: Optional[int] = None


Classification = List[Tuple[str, float]]


class RestClient:
    """TF Serving's REST API over HTTP/1.1 keep-alive (one connection per thread)."""

    def __init__(self, model_name: str, host: str = "127.0.0.1", port: int = 8501,
                 timeout: float = 30.0):
        self.model_name = model_name
        self.host, self.port, self.timeout = host, port, timeout
        self._local = threading.local()

    def model_path(self, version: Optional[int] = None, label: Optional[str] = None) -> str:
        path = f"/v1/models/{self.model_name}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += f"/labels/{label}"
        return path

    def predict(self, rows: Sequence[Mapping[str, Any]], version: Optional[int] = None,
                label: Optional[str] = None, signature_name: str = "serving_raw") -> Prediction:
        """Predictions for raw feature rows (row format: `instances` -> `predictions`)."""
        instances = payloads.json_rows(payloads.raw_columns(rows))
        body = {"signature_name": signature_name, "instances": instances}
        predictions = self.call("POST", self.model_path(version, label) + ":predict", body)["predictions"]
        return Prediction([p if isinstance(p, dict) else {"output": p} for p in predictions])

    def classify(self, examples: Sequence[Any], version: Optional[int] = None,
                 label: Optional[str] = None, signature_name: str = "serving_default"
                 ) -> List[Classification]:
        """(label, score) pairs per example; examples are tf.train.Examples or raw rows.

        Values are converted to their schema types first (`payloads.typed_row`):
        TF Serving types a JSON number by its form, so 192.0 for an INT feature fails.
        """
        rows = [payloads.typed_row(e if isinstance(e, Mapping) else payloads.row_from_example(e), i)
                for i, e in enumerate(examples)]
        body = {"signature_name": signature_name, "examples": rows}
        results = self.call("POST", self.model_path(version, label) + ":classify", body)["results"]
        return [[(str(c), float(s)) for c, s in result] for result in results]

    def status(self, version: Optional[int] = None, label: Optional[str] = None) -> Dict[str, Any]:
        return self.call("GET", self.model_path(version, label))

    def metadata(self, version: Optional[int] = None, label: Optional[str] = None) -> Dict[str, Any]:
        return self.call("GET", self.model_path(version, label) + "/metadata")

    def call(self, method: str, path: str, body: Any = None) -> Dict[str, Any]:
        """One request; raises ServingClientError on an error status."""
        data = json.dumps(body).encode() if body is not None else None
        status, text = self.raw(method, path, data)
        try:
            response = json.loads(text) if text else {}
        except ValueError:
            response = {"error": text.decode(errors="replace")}
        if status != 200:
            raise ServingClientError(_HTTP_CODES.get(status, "UNKNOWN"),
                                     response.get("error", str(response)), status)
        return response

    def raw(self, method: str, path: str, data: Optional[bytes] = None,
            headers: Optional[Mapping[str, str]] = None) -> Tuple[int, bytes]:
        """Sends bytes as they are (tests use it for malformed bodies); returns (status, body)."""
        for attempt in (1, 2):
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self._local.connection = connection
            try:
                connection.request(method, path, body=data, headers={
                    "Content-Type": "application/json", **(headers or {})})
                response = connection.getresponse()
                text = response.read()
                if response.will_close:
                    self.close()
                return response.status, text
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed: retry once on a new one.
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class GrpcClient:
    """TF Serving's gRPC API through tensorflow-serving-api's stubs."""

    def __init__(self, model_name: str, host: str = "127.0.0.1", port: int = 8500,
                 timeout: float = 30.0, max_message_bytes: int = 64 * 1024 * 1024):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.model_name, self.timeout = model_name, timeout
        self.channel = grpc.insecure_channel(f"{host}:{port}", options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def model_spec(self, version: Optional[int] = None, label: Optional[str] = None,
                   signature_name: str = ""):
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature_name)
        if version is not None:
            spec.version.value = int(version)
        elif label is not None:
            spec.version_label = label
        return spec

    def predict(self, rows: Sequence[Mapping[str, Any]], version: Optional[int] = None,
                label: Optional[str] = None, signature_name: str = "serving_raw") -> Prediction:
        """Predictions for raw feature rows through `serving_raw`."""
        from tensorflow_serving.apis import predict_pb2

        from serving import tensors

        request = predict_pb2.PredictRequest(model_spec=self.model_spec(version, label, signature_name))
        for key, column in payloads.raw_columns(rows).items():
            tensors.to_tensor_proto(column, request.inputs[key])
        response = self._call(self.prediction.Predict, request)
        outputs = {k: tensors.to_ndarray(response.outputs[k]) for k in response.outputs}
        return Prediction(payloads.json_rows(outputs), response.model_spec.version.value)

    def predict_tensors(self, inputs: Mapping[str, Any], version: Optional[int] = None,
                        label: Optional[str] = None, signature_name: str = "serving_default"):
        """The raw PredictResponse for already built TensorProtos (or arrays, sent with their own dtype)."""
        from tensorflow_serving.apis import predict_pb2

        from serving import tensors

        request = predict_pb2.PredictRequest(model_spec=self.model_spec(version, label, signature_name))
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(value if hasattr(value, "dtype") and hasattr(value, "tensor_shape")
                                         else tensors.to_tensor_proto(value))
        return self._call(self.prediction.Predict, request)

    def classify(self, examples: Sequence[Any], version: Optional[int] = None,
                 label: Optional[str] = None, signature_name: str = "serving_default"
                 ) -> List[Classification]:
        """(label, score) pairs per tf.train.Example or raw row, each converted to the schema's types."""
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest(
            model_spec=self.model_spec(version, label, signature_name))
        request.input.example_list.examples.extend(
            payloads.example_from_row(e if isinstance(e, Mapping) else payloads.row_from_example(e), i)
            for i, e in enumerate(examples))
        response = self._call(self.prediction.Classify, request)
        return [[(c.label, c.score) for c in result.classes]
                for result in response.result.classifications]

    def status(self, version: Optional[int] = None, label: Optional[str] = None) -> Dict[str, Any]:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self.model_spec(version, label))
        return payloads.message_dict(self._call(self.models.GetModelStatus, request))

    def metadata(self, version: Optional[int] = None, label: Optional[str] = None) -> Dict[str, Any]:
        """{"model_spec": ..., "signature_def": {key: SignatureDef as a dict}}."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self.model_spec(version, label), metadata_field=["signature_def"])
        response = self._call(self.prediction.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return {"model_spec": json_format.MessageToDict(response.model_spec),
                "signature_def": json_format.MessageToDict(
                    signature_map, preserving_proto_field_name=True)["signature_def"]}

    def _call(self, method, request):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ServingClientError(e.code().name, e.details()) from None

    def close(self) -> None:
        self.channel.close()


_HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED",
               429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE"}

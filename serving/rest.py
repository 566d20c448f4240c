"""TF Serving's REST API (port 8501) for the local server.

Paths, payloads and errors follow https://www.tensorflow.org/tfx/serving/api_rest:

    GET  /v1/models/{model}[/versions/{v} | /labels/{l}]            model status
    GET  /v1/models/{model}[/versions/{v} | /labels/{l}]/metadata   signature defs
    POST /v1/models/{model}[/versions/{v} | /labels/{l}]:predict    instances | inputs
    POST /v1/models/{model}[/versions/{v} | /labels/{l}]:classify   examples (+ context)
    POST /v1/models/{model}[/versions/{v} | /labels/{l}]:regress    examples (+ context)
    GET  /monitoring/prometheus/metrics                              request counters

Errors are `{"error": "..."}` with the HTTP status TF Serving derives from the
gRPC code. The server is the standard library's ThreadingHTTPServer: the API
is a handful of JSON routes, a thread per connection suits a model call that
releases the GIL, and it adds no dependency. Unlike TF Serving, bodies larger
than `max_request_bytes` are refused (413) before they are read.
"""

import base64
import binascii
import json
import logging
import math
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

import grpc
import numpy as np

from serving import payloads
from serving.errors import ServingError

log = logging.getLogger(__name__)

PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                  r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                  r"(?:(?P<metadata>/metadata)|:(?P<verb>[^/:]*))?$")
VERBS = ("predict", "classify", "regress")
# float32's largest finite value: a larger JSON number is refused, not turned into inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class RestServer(ThreadingHTTPServer):
    """The HTTP server; `app` is the `serving.server.LocalServer` that owns the models."""

    daemon_threads = True
    # Several clients at once (the benchmark runs 16) must not be refused.
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], app):
        self.app = app
        super().__init__(address, RestHandler)


class RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving's server offers
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK add ~40 ms to every kept-alive response.
    disable_nagle_algorithm = True
    server_version = "tfxt-local-serving"

    def log_message(self, format, *args):  # noqa: A002 - the request log replaces access logs
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    # TF Serving answers every other method on /v1/ with 400 "Malformed request"
    # (http_rest_api_handler.cc), not the standard library's 501 HTML page.
    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")

    def do_OPTIONS(self):  # noqa: N802
        self._handle("OPTIONS")

    def _handle(self, method: str) -> None:
        app = self.server.app
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        if method == "GET" and path == app.prometheus_path:
            return self._send(200, app.metrics.render(), "text/plain; version=0.0.4")
        match = PATH.match(path)
        try:
            body = self._read_body(app.max_request_bytes, required=method == "POST")
            if not path.startswith("/v1/"):
                # TF Serving registers its handler for /v1/ only; anything else has no handler.
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Not found: {method} {path}")
            if not match or not ((method == "POST" and match["verb"] in VERBS)
                                 or (method == "GET" and match["verb"] is None)):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: {method} {path}")
            version = int(match["version"]) if match["version"] else None
            name, label = match["name"], match["label"]
            if match["verb"]:
                status, response = 200, self._infer(app, match["verb"], name, version, label, body,
                                                    started)
            elif match["metadata"]:
                status, response = 200, app.metadata_json(name, version, label)
            else:
                status, response = 200, app.status_json(name, version, label)
        except RecursionError:
            # Deeply nested JSON: an answer, not a dropped connection.
            error = ServingError(grpc.StatusCode.INVALID_ARGUMENT, "JSON Parse error: nested too deeply")
            status, response = error.http_status, {"error": error.message}
        except Exception as e:  # an unexpected failure still gets TF Serving's 500 JSON
            error = e if isinstance(e, ServingError) else _internal_error(e)
            status, response = error.http_status, {"error": error.message}
            app.metrics.count(match["name"] if match else "", match and match["verb"] or method,
                              error.code.name)
            if match and match["verb"] in VERBS:
                app.request_log.write("rest", match["verb"], match["name"], None, None, error.code.name,
                                      started)
        self._send(status, json.dumps(response))

    def _read_body(self, limit: int, required: bool) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None and not required:
            return b""
        if length is None or not length.isdigit():
            self.close_connection = True
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "Content-Length or Transfer-Encoding: chunked is required")
        if int(length) > limit:
            # Refuse it without keeping it: discard a moderately large body in chunks so the
            # client can read the answer; close the connection on anything bigger.
            self.close_connection = True
            if int(length) <= 16 * limit:
                remaining = int(length)
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            raise _TooLarge(f"Request body of {length} bytes exceeds the limit of {limit} bytes")
        return self.rfile.read(int(length))

    def _read_chunked(self, limit: int) -> bytes:
        """A `Transfer-Encoding: chunked` body (RFC 9112 section 7.1), refused past `limit` bytes."""
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self.close_connection = True
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Malformed chunked body: chunk size {size_line[:20]!r}") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return bytes(body)
            if len(body) + size > limit:
                self.close_connection = True
                raise _TooLarge(f"Request body of more than {limit} bytes exceeds the limit of {limit} bytes")
            body += self.rfile.read(size)
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _infer(self, app, verb: str, name: str, version: Optional[int], label: Optional[str],
               body: bytes, started: float) -> Dict[str, Any]:
        request = parse_json(body)
        loaded = app.store.resolve(name, version, label)
        signature_name = request.get("signature_name") or "serving_default"
        if not isinstance(signature_name, str):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'signature_name' must be a string")
        if verb == "predict":
            signature_def, _ = loaded.signature(signature_name)
            inputs, row_format = decode_predict(request, signature_def)
            outputs = app.batcher.predict(loaded, signature_name, inputs)
            response = encode_predict(outputs, row_format)
            logged_inputs, logged_outputs = inputs, outputs
        else:
            examples = decode_examples(request)
            serialized = [e.SerializeToString() for e in examples]
            logged_inputs = {"examples": np.asarray(serialized, dtype=object)}
            if verb == "classify":
                classes, scores = loaded.classify(signature_name, serialized)
                response = {"results": classification_results(classes, scores)}
                logged_outputs = {"classes": classes, "scores": scores}
            else:
                values = loaded.regress(signature_name, serialized)
                response = {"results": payloads.to_json(values)}
                logged_outputs = {"outputs": values}
        app.metrics.count(name, verb, "OK", time.perf_counter() - started)
        app.request_log.write("rest", verb, name, loaded.version, signature_name, "OK", started,
                              logged_inputs, logged_outputs)
        return response

    def _send(self, status: int, text: str, content_type: str = "application/json") -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _internal_error(error: Exception) -> ServingError:
    """A bug or an unforeseen failure: logged with its traceback, answered as INTERNAL (500).

    Without this the handler thread dies and the client sees a dropped connection.
    """
    log.exception("Unexpected error in a REST request")
    return ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}".split("\n")[0])


class _TooLarge(ServingError):
    def __init__(self, message: str):
        super().__init__(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    @property
    def http_status(self) -> int:
        return 413


def parse_json(body: bytes) -> Dict[str, Any]:
    """The request object; NaN and Infinity are accepted, as TF Serving's parser accepts them."""
    try:
        request = json.loads(body)
    except RecursionError:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "JSON Parse error: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {e}") from None
    if not isinstance(request, dict):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "JSON Parse error: the request body must be a JSON object")
    return request


def decode_predict(request: Dict[str, Any], signature_def) -> Tuple[Dict[str, np.ndarray], bool]:
    """Named input arrays from `instances` (row format) or `inputs` (columnar); and which it was."""
    if ("instances" in request) == ("inputs" in request):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "Missing 'inputs' or 'instances' key" if "instances" not in request
                           else "Not both 'inputs' and 'instances' keys may be set")
    single = next(iter(signature_def.inputs)) if len(signature_def.inputs) == 1 else None
    if "inputs" in request:
        columns = request["inputs"]
        if not isinstance(columns, dict) or (single and single not in columns):
            if single is None:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "'inputs' must be an object of named inputs for this signature")
            columns = {single: columns}
        return {k: _array(v, signature_def.inputs.get(k), f"'inputs' key: {k}")
                for k, v in columns.items()}, False
    instances = request["instances"]
    if not isinstance(instances, list) or not instances:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'instances' must be a non-empty list")
    if single is not None and not (isinstance(instances[0], dict) and single in instances[0]):
        instances = [{single: value} for value in instances]
    keys = list(instances[0]) if isinstance(instances[0], dict) else []
    columns: Dict[str, List[Any]] = {k: [] for k in keys}
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) != set(keys):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"expected the named inputs {sorted(keys)}, as in element 0"))
        for key in keys:
            columns[key].append(instance[key])
    return {k: _array(v, signature_def.inputs.get(k), f"key: {k} of 'instances' list")
            for k, v in columns.items()}, True


def _array(value: Any, tensor_info, where: str) -> np.ndarray:
    """A JSON value as an array of the input's dtype; unknown inputs pass for the name check."""
    from tensorflow.core.framework import types_pb2

    if tensor_info is None:
        return np.asarray([])
    is_string = tensor_info.dtype == types_pb2.DT_STRING
    type_name = types_pb2.DataType.Name(tensor_info.dtype)[3:].lower()
    is_integer = tensor_info.dtype in (types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32,
                                       types_pb2.DT_INT64, types_pb2.DT_UINT8, types_pb2.DT_UINT16,
                                       types_pb2.DT_UINT32, types_pb2.DT_UINT64)

    def refuse(item, why=""):
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
            f"Failed to process {where}. JSON Value: {json.dumps(item)} "
            f"is not of expected type: {type_name}{why}"))

    def convert(item):
        if isinstance(item, list):
            return [convert(v) for v in item]
        if is_string:
            if isinstance(item, dict) and set(item) == {"b64"} and isinstance(item["b64"], str):
                return decode_b64(item["b64"], where)
            if isinstance(item, str):
                return item.encode()
            raise refuse(item)
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise refuse(item)
        if is_integer and not isinstance(item, int):
            raise refuse(item)  # 192.0 is not an integer, as in TF Serving
        if tensor_info.dtype == types_pb2.DT_FLOAT and math.isfinite(item) and abs(item) > FLOAT32_MAX:
            raise refuse(item, " (out of float32 range)")
        return item

    converted = convert(value)
    try:
        return np.asarray(converted, dtype=object if is_string else None)
    except ValueError:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Failed to process {where}: lists of different lengths") from None


def encode_predict(outputs: Dict[str, np.ndarray], row_format: bool) -> Dict[str, Any]:
    """`predictions` (row format) or `outputs` (columnar), as TF Serving writes them."""
    if not row_format:
        if len(outputs) == 1:
            name, value = next(iter(outputs.items()))
            return {"outputs": payloads.to_json(value, name)}
        return {"outputs": {k: payloads.to_json(v, k) for k, v in outputs.items()}}
    sizes = {len(v) if np.ndim(v) else 0 for v in outputs.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
            "Tensor name: outputs has inconsistent batch size; use the columnar 'inputs' format"))
    if len(outputs) == 1:
        name, value = next(iter(outputs.items()))
        return {"predictions": payloads.to_json(value, name)}
    size = sizes.pop()
    return {"predictions": [{k: payloads.to_json(v[i], k) for k, v in outputs.items()}
                            for i in range(size)]}


def decode_examples(request: Dict[str, Any]) -> List[Any]:
    """The tf.Examples of a classify/regress request, each merged with `context`."""
    examples = request.get("examples")
    if not isinstance(examples, list) or not examples:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'examples' must be a non-empty list")
    context = request.get("context") or {}
    if not isinstance(context, dict):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'context' must be a JSON object")
    result = []
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Failed to process element: {index} of 'examples': not a JSON object")
        try:
            result.append(payloads.example_from_json({**context, **example}, decode_b64))
        except ValueError as e:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Failed to process element: {index} of 'examples': {e}") from None
    return result


def decode_b64(text: str, where: str = "a {\"b64\": ...} value") -> bytes:
    """Strict base64 (RFC 4648): TF Serving refuses what is not, so this does too."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Failed to process {where}: unable to base64 decode") from None


def classification_results(classes: Optional[np.ndarray], scores: Optional[np.ndarray]) -> List[Any]:
    """TF Serving's `results`: per example, a list of [label, score] pairs."""
    reference = scores if scores is not None else classes
    results = []
    for i in range(len(reference)):
        labels = [payloads.to_json(c) for c in classes[i]] if classes is not None else [
            str(j) for j in range(len(scores[i]))]
        row_scores = [float(s) for s in scores[i]] if scores is not None else [0.0] * len(labels)
        results.append([[label, score] for label, score in zip(labels, row_scores, strict=True)])
    return results

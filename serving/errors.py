"""`ServingError`: a request failure with the gRPC status code TF Serving would give.

The REST layer maps the code to an HTTP status exactly as TF Serving's
`ToHTTPStatusCode` does (tensorflow_serving/model_servers/http_server.cc).
"""

import grpc

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A request the server answers with an error status and message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def from_tf_error(error: Exception) -> ServingError:
    """A TensorFlow error raised by a model call, with its status code kept."""
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
        code = next((c for c in grpc.StatusCode if c.value[0] == error.error_code),
                    grpc.StatusCode.INTERNAL)
        return ServingError(code, _op_error_message(error.message))
    if isinstance(error, (TypeError, ValueError)):
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error).split("\n")[0])
    return ServingError(grpc.StatusCode.INTERNAL, str(error).split("\n")[0])


def _op_error_message(message: str) -> str:
    """The line of a TF error that says what was wrong, without the graph traceback."""
    lines = [line for line in message.splitlines()
             if line.strip() and not line[0].isspace()
             and not line.startswith(("Graph execution error", "Detected at node"))]
    return lines[-1].strip() if lines else message.strip()

"""TensorProto <-> numpy conversions for the gRPC server and client, done with numpy in bulk.

`tf.make_tensor_proto(list)` and `tf.make_ndarray` convert element by element in
Python for small tensors, which cost about 0.7 ms per single-row request and
made gRPC slower than REST. Numeric tensors here travel as `tensor_content`
(raw little-endian bytes, one `tobytes`/`frombuffer`), strings as
`string_val`. Both are TensorProto encodings every TF Serving client and
server reads. A TensorProto that does not describe a valid tensor (its
content does not match its shape or dtype) raises `MalformedTensor`, which
the server answers with INVALID_ARGUMENT as TF Serving does.

Called by `serving.grpc_service` and `serving.client`.
"""

import math
from typing import Any

import numpy as np

# DataType enum value -> (numpy dtype, TensorProto field holding its values).
_NUMERIC = {
    1: (np.dtype(np.float32), "float_val"),  # DT_FLOAT
    2: (np.dtype(np.float64), "double_val"),  # DT_DOUBLE
    3: (np.dtype(np.int32), "int_val"),  # DT_INT32
    9: (np.dtype(np.int64), "int64_val"),  # DT_INT64
    10: (np.dtype(np.bool_), "bool_val"),  # DT_BOOL
}
DT_STRING = 7
_BY_NUMPY = {dtype: enum for enum, (dtype, _) in _NUMERIC.items()}


class MalformedTensor(ValueError):
    """A TensorProto whose content does not fit its dtype and shape."""


def dtype_name(enum: int) -> str:
    """TF's name of a DataType enum value (1 -> "float"), as TF Serving's messages write it."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum)[3:].lower()


def to_ndarray(proto) -> np.ndarray:
    """The numpy array a TensorProto holds (strings as an object array of bytes)."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if shape and min(shape) < 0:
        raise MalformedTensor(f"tensor shape {shape} has a negative dimension")
    count = math.prod(shape)
    if proto.dtype == DT_STRING:
        return _fill(np.array(list(proto.string_val), dtype=object), shape, count, proto.dtype)
    if proto.dtype not in _NUMERIC:
        import tensorflow as tf

        try:
            return tf.make_ndarray(proto)
        except Exception as e:  # noqa: BLE001 - any failure means the proto is not a tensor
            raise MalformedTensor(str(e).split("\n")[0]) from None
    dtype, field = _NUMERIC[proto.dtype]
    content = proto.tensor_content
    if content:
        if len(content) != count * dtype.itemsize:
            raise MalformedTensor(f"tensor_content holds {len(content)} bytes; shape {shape} "
                                  f"of {dtype_name(proto.dtype)} needs {count * dtype.itemsize}")
        return np.frombuffer(content, dtype=dtype).reshape(shape)
    return _fill(np.asarray(getattr(proto, field), dtype=dtype), shape, count, proto.dtype)


def _fill(values: np.ndarray, shape, count: int, dtype: int) -> np.ndarray:
    """TensorProto's rule: n values fill the shape exactly, one value is repeated, none means zeros."""
    if len(values) == count:
        return values.reshape(shape)
    if len(values) == 1:
        return np.full(shape, values[0], dtype=values.dtype)
    if len(values) == 0:
        return np.full(shape, b"" if dtype == DT_STRING else 0, dtype=values.dtype)
    raise MalformedTensor(f"{len(values)} values do not fill a tensor of shape {shape}")


def to_tensor_proto(value: Any, proto=None):
    """A TensorProto for a numpy array (or anything np.asarray takes).

    With `proto` (an empty TensorProto, e.g. `request.inputs[key]`), fills it in
    place instead of building one to copy.
    """
    array = np.asarray(value)
    if proto is None:
        from tensorflow.core.framework import tensor_pb2

        proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype == object or array.dtype.kind in "SU":
        proto.dtype = DT_STRING
        proto.string_val.extend(v.encode() if isinstance(v, str) else bytes(v) for v in array.reshape(-1))
        return proto
    enum = _BY_NUMPY.get(array.dtype)
    if enum is None:
        import tensorflow as tf

        proto.CopyFrom(tf.make_tensor_proto(array))
        return proto
    proto.dtype = enum
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto

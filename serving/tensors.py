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

from typing import Any

import numpy as np

# DataType enum value -> (numpy dtype, TensorProto field holding its values).
_NUMERIC = {
    1: (np.float32, "float_val"),  # DT_FLOAT
    2: (np.float64, "double_val"),  # DT_DOUBLE
    3: (np.int32, "int_val"),  # DT_INT32
    9: (np.int64, "int64_val"),  # DT_INT64
    10: (np.bool_, "bool_val"),  # DT_BOOL
}
DT_STRING = 7
_BY_NUMPY = {np.dtype(dtype): enum for enum, (dtype, _) in _NUMERIC.items()}


class MalformedTensor(ValueError):
    """A TensorProto whose content does not fit its dtype and shape."""


def dtype_name(enum: int) -> str:
    """TF's name of a DataType enum value (1 -> "float"), as TF Serving's messages write it."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum)[3:].lower()


def to_ndarray(proto) -> np.ndarray:
    """The numpy array a TensorProto holds (strings as an object array of bytes)."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise MalformedTensor(f"tensor shape {shape} has a negative dimension")
    count = int(np.prod(shape)) if shape else 1
    if proto.dtype == DT_STRING:
        values = np.empty(len(proto.string_val), dtype=object)
        values[:] = list(proto.string_val)
        return _fill(values, shape, count, proto.dtype)
    if proto.dtype not in _NUMERIC:
        import tensorflow as tf

        try:
            return tf.make_ndarray(proto)
        except Exception as e:  # noqa: BLE001 - any failure means the proto is not a tensor
            raise MalformedTensor(str(e).split("\n")[0]) from None
    dtype, field = _NUMERIC[proto.dtype]
    if proto.tensor_content:
        itemsize = np.dtype(dtype).itemsize
        if len(proto.tensor_content) != count * itemsize:
            raise MalformedTensor(f"tensor_content holds {len(proto.tensor_content)} bytes; shape {shape} "
                                  f"of {dtype_name(proto.dtype)} needs {count * itemsize}")
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
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


def to_tensor_proto(value: Any):
    """A TensorProto for a numpy array (or anything np.asarray takes)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    array = np.asarray(value)
    proto = tensor_pb2.TensorProto(tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]))
    if array.dtype == object or array.dtype.kind in "SU":
        proto.dtype = DT_STRING
        proto.string_val.extend(v.encode() if isinstance(v, str) else bytes(v) for v in array.reshape(-1))
        return proto
    enum = _BY_NUMPY.get(array.dtype)
    if enum is None:
        import tensorflow as tf

        return tf.make_tensor_proto(array)
    proto.dtype = enum
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto

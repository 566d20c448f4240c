"""tf.Examples serialized deterministically from Arrow list columns, whole columns at a time.

`pipeline.components.example_gen.read_examples` calls `serialize`. The bytes are those of
`Example.SerializeToString(deterministic=True)`: ExampleGen's hash split keys on them, so a row
keeps its split. tfx-bsl's encoder writes the same fields, but in the order of a protobuf map,
which is seeded per map and so differs from row to row (tfx_bsl/cc/coders/example_encoder.cc
calls plain `SerializeToString`); re-serializing each example in Python to sort it cost about
80% of ExampleGen's parsing time. Here the wire format is built with numpy, column by column:

    Example     = 0x0A len Features
    Features    = for each column, sorted by name: 0x0A len (0x0A len name 0x12 len Feature)
    Feature     = 0x0A len BytesList | 0x12 len FloatList | 0x1A len Int64List
    BytesList   = for each value: 0x0A len value
    FloatList   = 0x0A len packed little-endian float32s   (nothing for an empty list)
    Int64List   = 0x0A len packed varints                  (nothing for an empty list)

tests/test_example_gen.py compares the bytes with protobuf's on the bundled data and on a wide
generated CSV (blanks, negative and large ints, special floats, unicode text).
"""

from typing import List, Sequence, Tuple

import numpy as np

# Bytes of each row: all rows' bytes back to back, and row i is data[offsets[i]:offsets[i + 1]].
Ragged = Tuple[np.ndarray, np.ndarray]

_FEATURE_TAGS = {"bytes": 0x0A, "float": 0x12, "int": 0x1A}


def serialize(names: Sequence[str], columns: Sequence) -> List[bytes]:
    """Deterministically serialized tf.Examples of list<float32 | int64 | binary> columns."""
    import pyarrow as pa

    order = sorted(range(len(names)), key=lambda index: names[index].encode("utf-8"))
    entries = [_map_entry(names[index], columns[index]) for index in order]
    data, offsets = _wrap(0x0A, _concat(entries), keep_empty=True)
    return pa.BinaryArray.from_buffers(
        pa.binary(), len(offsets) - 1, [None, pa.py_buffer(offsets.astype(np.int32)),
                                        pa.py_buffer(data)]).to_pylist()


def _map_entry(name: str, column) -> Ragged:
    """`0x0A len (0x0A len name 0x12 len Feature)` for each row of one list column."""
    import pyarrow as pa

    rows = len(column)
    row_offsets = _buffer(column.buffers()[1], np.int32, column.offset, rows + 1).astype(np.int64)
    # A sliced list column still points into all of its parent's values: take only its own.
    values = column.values.slice(row_offsets[0], row_offsets[-1] - row_offsets[0])
    row_offsets = row_offsets - row_offsets[0]
    if pa.types.is_floating(values.type):
        kind, payload = "float", _fixed_width(values, np.dtype("<f4"), row_offsets)
    elif pa.types.is_integer(values.type):
        kind, payload = "int", _group(_varints(_buffer(values.buffers()[1], np.int64, values.offset,
                                                       len(values))), row_offsets)
    else:
        kind, payload = "bytes", _group(_wrap(0x0A, _binary(values), keep_empty=True), row_offsets)
    if kind != "bytes":  # a packed list: its field is left out when the list is empty
        payload = _wrap(0x0A, payload, keep_empty=False)
    feature = _wrap(_FEATURE_TAGS[kind], payload, keep_empty=True)
    key = _constant(_wrap_one(0x0A, name.encode("utf-8")), rows)
    return _wrap(0x0A, _concat([key, _wrap(0x12, feature, keep_empty=True)]), keep_empty=True)


def _buffer(buffer, dtype, offset: int, count: int) -> np.ndarray:
    return np.frombuffer(buffer, dtype=dtype, count=offset + count)[offset:]


def _fixed_width(values, dtype: np.dtype, row_offsets: np.ndarray) -> Ragged:
    flat = _buffer(values.buffers()[1], dtype, values.offset, len(values))
    return flat.astype(dtype).view(np.uint8), row_offsets * dtype.itemsize


def _binary(values) -> Ragged:
    offsets = _buffer(values.buffers()[1], np.int32, values.offset, len(values) + 1).astype(np.int64)
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data, offsets - offsets[0]


def _group(items: Ragged, row_offsets: np.ndarray) -> Ragged:
    """Rows made of consecutive items: row i holds items row_offsets[i] to row_offsets[i + 1]."""
    data, item_offsets = items
    offsets = item_offsets[row_offsets]
    return data[offsets[0]:offsets[-1]], offsets - offsets[0]


def _varints(values: np.ndarray) -> Ragged:
    """Protobuf varints of int64 values (a negative value takes ten bytes, as in protobuf)."""
    remaining = values.astype(np.int64).view(np.uint64)
    sizes = np.ones(len(remaining), dtype=np.int64)
    for shift in range(7, 64, 7):
        sizes += remaining >= (np.uint64(1) << np.uint64(shift))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    data = np.zeros(offsets[-1], dtype=np.uint8)
    for byte in range(int(sizes.max(initial=0))):
        rows = np.nonzero(sizes > byte)[0]
        group = (remaining[rows] >> np.uint64(7 * byte)) & np.uint64(0x7F)
        more = (sizes[rows] > byte + 1).astype(np.uint64) << np.uint64(7)
        data[offsets[rows] + byte] = (group | more).astype(np.uint8)
    return data, offsets


def _wrap(tag: int, items: Ragged, keep_empty: bool) -> Ragged:
    """`tag len bytes` for each row (a length-delimited field); with keep_empty=False an empty
    row stays empty, as protobuf leaves out an empty packed field."""
    data, offsets = items
    lengths = np.diff(offsets)
    header_data, header_offsets = _varints(lengths)
    tag_lengths = np.ones(len(lengths), dtype=np.int64)
    if not keep_empty:
        empty = lengths == 0
        tag_lengths[empty] = 0
        header_data, header_offsets = _drop_rows(header_data, header_offsets, empty)
    tags = (np.full(tag_lengths.sum(), tag, dtype=np.uint8),
            np.concatenate([[0], np.cumsum(tag_lengths)]))
    return _concat([tags, (header_data, header_offsets), items])


def _wrap_one(tag: int, value: bytes) -> bytes:
    data, _ = _wrap(tag, (np.frombuffer(value, dtype=np.uint8), np.array([0, len(value)])), True)
    return data.tobytes()


def _drop_rows(data: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> Ragged:
    """The same rows with those where `rows` is true emptied."""
    lengths = np.where(rows, 0, np.diff(offsets))
    keep = np.repeat(~rows, np.diff(offsets))
    return data[keep], np.concatenate([[0], np.cumsum(lengths)])


def _constant(value: bytes, rows: int) -> Ragged:
    return (np.tile(np.frombuffer(value, dtype=np.uint8), rows),
            np.arange(rows + 1, dtype=np.int64) * len(value))


def _concat(parts: Sequence[Ragged]) -> Ragged:
    """Row i of the result is row i of every part, one after the other."""
    lengths = [np.diff(offsets) for _, offsets in parts]
    total = np.sum(lengths, axis=0)
    offsets = np.concatenate([[0], np.cumsum(total)])
    data = np.empty(offsets[-1], dtype=np.uint8)
    start = offsets[:-1].copy()
    for (part_data, part_offsets), part_lengths in zip(parts, lengths, strict=True):
        # Each byte of the part moves by its row's start in the result minus its start in the part.
        shift = np.repeat(start - part_offsets[:-1], part_lengths)
        data[np.arange(len(part_data)) + shift] = part_data
        start += part_lengths
    return data, offsets

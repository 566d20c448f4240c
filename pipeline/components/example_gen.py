"""CsvExampleGen's executor: checks every span file's header, then reads it with the curated schema's types.

`pipeline.pipeline.create_pipeline` runs it as the executor of a FileBasedExampleGen with the id
`CsvExampleGen`; the tests call `check_headers` and `read_examples` directly. It replaces TFX's
CSV source (`csv_executor._CsvToExample`) because that source:
- infers each column's type from the data of this run, so a FLOAT column that happens to hold
  only whole numbers (`35`) becomes INT and fails validation;
- requires every file to have the identical header, and otherwise stops the Beam job with "Files
  in same split ... have different header", naming neither file nor column; a UTF-8 BOM, a
  reordered header and an empty file all end there;
- reads files in `fileio.glob`'s order, which for local files changes from run to run, so two runs
  of one config trained on the same rows in another order.

What this executor does instead, before the Beam job starts (`check_headers`):
- lists the files in sorted order;
- reads each header as UTF-8 (a BOM is dropped) and accepts columns in any order;
- refuses an empty file, a header that is not UTF-8, a repeated column, and a file that lacks a
  column or has an extra one, naming the file and the column. The reference is the curated schema
  when at least one file matches it. When no file does, the data set as a whole has changed (new
  data being adapted, or a column dropped from every span): files are then compared with each
  other, and ExampleValidator reports each column against the schema, after SchemaGen has
  inferred the new one that `tfxt schema refresh` starts from.

Inside the Beam job (`read_examples`), each file is parsed column by column with pyarrow's CSV
reader, typed by the schema (FLOAT, INT, BYTES as UTF-8 text); a column the schema does not have is
typed INT, FLOAT or BYTES from its values. `example_bytes.serialize` writes the columns as
tf.Examples, serialized deterministically (features sorted by name, as protobuf's deterministic
serialization does): those bytes are the key of ExampleGen's hash split, so the same rows land in
the same split as before. A blank cell becomes an empty value list, as in TFX's source. A value
that does not fit its type stops the run naming file, row and column.
"""

import csv
import io
import json
import os
from typing import Dict, Iterator, List, Optional, Sequence

import apache_beam as beam
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from pipeline.components import example_bytes
from pipeline.components.anomalies_gate import DataValidationError

# Rows serialized at a time: enough to amortise numpy's per-call cost, few enough that the
# index arrays `example_bytes` builds (8 bytes per output byte) stay small.
BATCH_ROWS = 8192
SCHEMA_PATH_KEY = "schema_path"


class CsvFileError(DataValidationError):
    """A span file that cannot be read as the schema describes; the message names file and column."""


def custom_config(schema_path: str, schema_fingerprint: str) -> example_gen_pb2.CustomConfig:
    """ExampleGen's custom_config carrying the curated schema (its fingerprint re-runs ExampleGen)."""
    from google.protobuf import any_pb2, struct_pb2

    packed = any_pb2.Any()
    packed.Pack(struct_pb2.Struct(fields={
        SCHEMA_PATH_KEY: struct_pb2.Value(string_value=schema_path),
        "schema_fingerprint": struct_pb2.Value(string_value=schema_fingerprint),
    }))
    return example_gen_pb2.CustomConfig(custom_config=packed)


def load_schema_types(schema_path: str) -> Dict[str, str]:
    """Column name -> schema type name (FLOAT, INT, BYTES) of the curated schema."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    with fileio.open(schema_path, "r") as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    return {feature.name: schema_pb2.FeatureType.Name(feature.type) for feature in schema.feature}


def read_header(path: str) -> List[str]:
    """The column names of a CSV file's first line, decoded as UTF-8 (a BOM is dropped)."""
    with fileio.open(path, "rb") as f:
        return _parse_header(path, f.readline())


def _parse_header(path: str, first_line: bytes) -> List[str]:
    if not first_line.strip():
        raise CsvFileError(f"{path} is empty: it has no header line. Remove the file, or write the "
                           "header and rows into it.")
    text = first_line.decode("utf-8-sig", errors="replace")
    if "\ufffd" in text:  # checked, not caught: the run report shows the innermost exception of a chain
        raise CsvFileError(f"{path}: the header is not UTF-8 text. Save the file as UTF-8 (CSV UTF-8 in "
                           "spreadsheet programs).")
    columns = [name.strip() for name in next(csv.reader([text]))]
    separator = next((sep for sep in (";", "\t", "|") if len(columns) == 1 and sep in columns[0]), None)
    if separator:
        raise CsvFileError(f"{path}: the header is one column, {columns[0][:60]!r}, split by "
                           f"{separator!r}, not by commas. Save the file as comma-separated CSV.")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise CsvFileError(f"{path}: column '{repeated[0]}' appears more than once in the header. "
                           "Rename or remove the repeated column.")
    return columns


def check_headers(paths: Sequence[str], schema_columns: Sequence[str]) -> Dict[str, List[str]]:
    """Checks every file's header (module docstring); returns path -> its columns.

    Raises:
      CsvFileError: naming the first file that is empty, not UTF-8, or lacks or adds a column.
    """
    headers = {path: read_header(path) for path in paths}
    expected = set(schema_columns)
    if not any(set(columns) == expected for columns in headers.values()):
        # The whole data set differs from the schema: validation names its columns (module docstring).
        expected = set(headers[paths[0]])
    for path, columns in headers.items():
        missing = sorted(expected - set(columns))
        if missing:
            raise CsvFileError(
                f"{path} has no column '{missing[0]}' (the other span files and schema/schema.pbtxt have "
                f"it). Add the column to the file, or remove the file from the data.")
        extra = sorted(set(columns) - expected)
        if extra:
            raise CsvFileError(
                f"{path} has an extra column '{extra[0]}' that the other span files and the schema do "
                "not have. Remove the column from the file; or, if every span now has it, add it to "
                "all of them and run `tfxt schema refresh`.")
    return headers


def read_examples(path: str, schema_types: Dict[str, str]) -> Iterator[bytes]:
    """Serialized tf.Examples of one CSV file, in row order, typed by `schema_types`."""
    import pyarrow as pa

    with fileio.open(path, "rb") as f:
        data = f.read()
    header, _, rows = data.partition(b"\n")
    columns = _parse_header(path, header)
    if not rows.strip():
        return  # a header and no rows (with or without its newline): the data gate counts rows
    types = {name: _ARROW_TYPES[schema_types.get(name, "BYTES")]() for name in columns}
    try:
        table, error = _read_csv(data, columns, types), None
    except pa.ArrowInvalid as e:
        table, error = None, e
    if error is not None:
        # Raised outside the except block: the run report shows the innermost exception of a chain.
        raise CsvFileError(_explain_bad_cell(path, data, columns, schema_types, error))
    _check_finite(path, table, schema_types)
    lists = [_as_lists(table.column(name).combine_chunks(), name in schema_types) for name in columns]
    for start in range(0, table.num_rows, BATCH_ROWS):
        yield from example_bytes.serialize(columns, [values.slice(start, BATCH_ROWS) for values in lists])


def _arrow_float():
    import pyarrow as pa

    return pa.float64()


def _arrow_int():
    import pyarrow as pa

    return pa.int64()


def _arrow_text():
    import pyarrow as pa

    return pa.string()  # validates UTF-8; cast to binary for the encoder


_ARROW_TYPES = {"FLOAT": _arrow_float, "INT": _arrow_int, "BYTES": _arrow_text}


def _read_csv(data: bytes, columns: List[str], types):
    from pyarrow import csv as pa_csv

    return pa_csv.read_csv(
        io.BytesIO(data),
        # The names as `_parse_header` read them (BOM and spaces dropped); the header row is skipped.
        read_options=pa_csv.ReadOptions(column_names=columns, skip_rows=1),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        # Only an empty cell is missing, as in TFX's CSV source ("NA" stays the text "NA").
        convert_options=pa_csv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                              quoted_strings_can_be_null=True))


def _as_lists(column, typed_by_schema: bool):
    """A list<value> column: one value per row, an empty list where the cell was blank."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_string(column.type) and not typed_by_schema:
        column = _infer_values(column)
    if pa.types.is_floating(column.type):
        column = column.cast(pa.float32())  # tf.train.FloatList holds float32, as TFX's float() did
    elif pa.types.is_string(column.type):
        column = column.cast(pa.binary())
    present = np.asarray(column.is_valid(), dtype=bool)
    if pa.types.is_floating(column.type):
        # "NaN" (numpy's and pandas' text for no value) is a blank, so the blank limit counts it:
        # kept as a number, it made Transform's mean, and so every scaled value, NaN.
        present &= ~np.isnan(column.to_numpy(zero_copy_only=False))
    offsets = np.concatenate([[0], np.cumsum(present)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), column.filter(pa.array(present)))


def _check_finite(path: str, table, schema_types: Dict[str, str]) -> None:
    """Refuses an infinite FLOAT, or one too large for float32 (tf.train.FloatList), naming its row."""
    import numpy as np

    for name in table.column_names:
        if schema_types.get(name) != "FLOAT":
            continue
        values = table.column(name).combine_chunks().to_numpy(zero_copy_only=False)
        with np.errstate(over="ignore"):
            infinite = np.flatnonzero(np.isinf(values.astype(np.float32)))
        if len(infinite):
            row = int(infinite[0])
            raise CsvFileError(
                f"{path}, data row {row + 1}, column '{name}': '{values[row]:g}' is not a finite number "
                "that a FLOAT (32-bit) can hold. Fix the value, or leave the cell blank if it is unknown.")


def _infer_values(column):
    """INT, FLOAT or text for a column the schema lacks, from its values (TFX's inference order)."""
    import pyarrow as pa

    for arrow_type in (pa.int64(), pa.float64()):
        try:
            return column.cast(arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return column


def _explain_bad_cell(path: str, data: bytes, columns: List[str], schema_types: Dict[str, str],
                      error: Exception) -> str:
    """One line naming the file, row and column of the first value that does not fit its type."""
    import pyarrow as pa

    try:
        text = _read_csv(data, columns, {name: pa.binary() for name in columns})
    except pa.ArrowInvalid as e:
        return f"{path} is not a well-formed CSV file: {_ragged_row(data, len(columns)) or e}. Fix the file."
    for name in columns:
        for row, value in enumerate(text.column(name).to_pylist(), start=1):
            problem = _cell_problem(value, schema_types.get(name, "BYTES"))
            if problem:
                return (f"{path}, data row {row}, column '{name}': {problem}. Fix the value, or change "
                        "the column's type in schema/schema.pbtxt if the data is right.")
    return f"{path} could not be read: {error}. Fix the file."


def _ragged_row(data: bytes, width: int) -> str:
    """Which data row has another number of fields than the header (as the csv module splits it)."""
    lines = io.StringIO(data.decode("utf-8-sig", errors="replace"), newline="")
    for row, fields in enumerate(csv.reader(lines)):
        if row and fields and len(fields) != width:
            return (f"data row {row} has {len(fields)} field(s) where the header has {width} (a missing or "
                    "extra comma, or an unclosed quote)")
    return ""


def _cell_problem(value: Optional[bytes], schema_type: str) -> str:
    if value is None:
        return ""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "the text is not UTF-8; save the file as UTF-8"
    converters = {"INT": int, "FLOAT": float}
    if schema_type in converters:
        try:
            number = converters[schema_type](text)
        except ValueError:
            return f"{text!r} is not {'an' if schema_type == 'INT' else 'a'} {schema_type} as the schema says"
        if schema_type == "INT" and not -(2**63) <= number < 2**63:
            return f"{text!r} is out of the INT range (64-bit integers)"
    return ""


@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
class _SchemaTypedCsvToExample(beam.PTransform):
    """The split's CSV files, headers checked, as serialized tf.Examples in sorted-file row order."""

    def __init__(self, exec_properties: Dict, split_pattern: str):
        super().__init__()
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        self._pattern = os.path.join(input_base, split_pattern)
        self._schema_path = _schema_path(exec_properties)

    def expand(self, pipeline: beam.Pipeline):
        paths = sorted(fileio.glob(self._pattern))
        if not paths:
            raise CsvFileError(f"No CSV file matches {self._pattern}: put the span files there.")
        schema_types = load_schema_types(self._schema_path)
        check_headers(paths, list(schema_types))
        return (pipeline
                | "SpanFiles" >> beam.Create(paths)
                | "ReadTyped" >> beam.FlatMap(read_examples, schema_types))


def _schema_path(exec_properties: Dict) -> str:
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}", config)
    from google.protobuf import struct_pb2

    fields = struct_pb2.Struct()
    if not config.custom_config.Unpack(fields) or SCHEMA_PATH_KEY not in fields.fields:
        raise ValueError("CsvExampleGen needs custom_config(schema_path, ...) from this module: "
                         f"got {json.dumps(exec_properties.get('custom_config'))}.")
    return fields.fields[SCHEMA_PATH_KEY].string_value


class Executor(BaseExampleGenExecutor):
    """CsvExampleGen's executor: header checks and schema-typed, columnar parsing (module docstring)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX's name
        return _SchemaTypedCsvToExample

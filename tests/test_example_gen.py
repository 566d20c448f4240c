"""CsvExampleGen's executor (`pipeline.components.example_gen`) on files, without a pipeline run.

Header and encoding variants go through `check_headers` and `read_examples` directly; one Beam
run checks that the bundled spans give the very tf.Examples, in the same order, that TFX's own
CSV source gives, so hash splits and trained models stay as they were.
"""

import os

import apache_beam as beam
import pytest
import tensorflow as tf

from pipeline.components import example_gen
from pipeline.orchestration import DIRECT_RUNNER
from tests.conftest import DATA_ROOT, SCHEMA_PATH

HEADER = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"
ROWS = ["Adelie,Torgersen,39.1,18.7,181,3750,male,2007",
        "Gentoo,Biscoe,46.2,14.4,214,4650,,2008"]


@pytest.fixture(scope="module")
def schema_types():
    return example_gen.load_schema_types(SCHEMA_PATH)


def _write(path, text, encoding="utf-8"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


def _examples(path, schema_types):
    return [tf.train.Example.FromString(e) for e in example_gen.read_examples(path, schema_types)]


def _values(example, name):
    feature = example.features.feature[name]
    return list(getattr(feature, feature.WhichOneof("kind")).value)


def test_bundled_spans_give_tfx_sources_examples_in_sorted_file_order(tmp_path):
    from tfx.components.example_gen.csv_example_gen import executor as tfx_csv
    from tfx.dsl.io import fileio

    properties = {"input_base": DATA_ROOT,
                  "custom_config": _custom_config_json()}
    ours = _run_source(example_gen.Executor().GetInputSourceToExamplePTransform(), properties,
                       tmp_path / "ours.txt")
    # TFX's own source, made to read the files in sorted order, is the reference.
    unpatched = fileio.glob
    original = tfx_csv.fileio
    tfx_csv.fileio = type("SortedFileio", (), {"glob": staticmethod(lambda p: sorted(unpatched(p)))})
    try:
        theirs = _run_source(tfx_csv._CsvToExample, properties, tmp_path / "theirs.txt")  # noqa: SLF001
    finally:
        tfx_csv.fileio = original
    assert len(ours) == 344
    assert ours == theirs


def _custom_config_json():
    from tfx.utils import proto_utils

    return proto_utils.proto_to_json(example_gen.custom_config(SCHEMA_PATH, "any"))


def _run_source(source, properties, out):
    def canonical(record):
        if isinstance(record, bytes):
            record = tf.train.Example.FromString(record)
        return record.SerializeToString(deterministic=True).hex()

    with beam.Pipeline(argv=[f"--runner={DIRECT_RUNNER}"]) as p:  # the pipeline's runner
        _ = (p | source(properties, "span-*/*.csv") | beam.Map(canonical)
             | beam.io.WriteToText(str(out), num_shards=1, shard_name_template=""))
    return out.read_text().split()


def test_a_bom_a_reordered_header_and_crlf_read_as_the_plain_file(tmp_path, schema_types):
    plain = _write(tmp_path / "plain.csv", "\n".join([HEADER, *ROWS]) + "\n")
    with_bom = _write(tmp_path / "bom.csv", "\ufeff" + "\n".join([HEADER, *ROWS]) + "\n")
    names = HEADER.split(",")
    order = list(reversed(range(len(names))))
    reordered = _write(tmp_path / "reordered.csv", "\n".join(
        ",".join(line.split(",")[i] for i in order) for line in [HEADER, *ROWS]) + "\n")
    crlf = _write(tmp_path / "crlf.csv", "\ufeff" + "\r\n".join([HEADER, *ROWS]) + "\r\n")
    example_gen.check_headers([plain, with_bom, reordered, crlf], list(schema_types))
    expected = _examples(plain, schema_types)
    assert len(expected) == 2
    assert _examples(with_bom, schema_types) == expected
    assert _examples(reordered, schema_types) == expected
    assert _examples(crlf, schema_types) == expected


def test_whole_numbers_in_a_float_column_are_floats(tmp_path, schema_types):
    path = _write(tmp_path / "span-1" / "whole.csv", "\n".join(
        [HEADER, "Adelie,Biscoe,35,18,181,3750,male,2009", "Adelie,Biscoe,41,20,203,4725,,2009"]) + "\n")
    examples = _examples(path, schema_types)
    assert [_values(e, "bill_length_mm") for e in examples] == [[35.0], [41.0]]
    assert all(e.features.feature["bill_depth_mm"].HasField("float_list") for e in examples)
    assert all(e.features.feature["flipper_length_mm"].HasField("int64_list") for e in examples)


def test_a_blank_cell_is_an_empty_value_list(tmp_path, schema_types):
    path = _write(tmp_path / "blank.csv", "\n".join([HEADER, *ROWS]) + "\n")
    sex = _examples(path, schema_types)[1].features.feature["sex"]
    assert sex.HasField("bytes_list") and list(sex.bytes_list.value) == []


def _good_span(tmp_path, span=2007):
    return _write(tmp_path / f"span-{span}" / "penguins.csv", "\n".join([HEADER, *ROWS]) + "\n")


@pytest.mark.parametrize("content, says", [
    (b"", "is empty"),
    (("species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,sex,year\n"
      "Adelie,Torgersen,39.1,18.7,181,male,2007\n"), "has no column 'body_mass_g'"),
    (HEADER + ",comment\n" + ROWS[0] + ",ok\n", "has an extra column 'comment'"),
    (HEADER.replace("island", "\u00eele").encode("latin-1") + b"\n", "header is not UTF-8"),
    (HEADER + ",sex\n", "column 'sex' appears more than once"),
    (HEADER.replace(",", ";") + "\n" + ROWS[0].replace(",", ";") + "\n", "split by ';', not by commas"),
    (HEADER.replace(",", "\t") + "\n", "split by '\\t', not by commas"),
    (HEADER.replace(",", "|") + "\n", "split by '|', not by commas"),
], ids=["empty-file", "missing-column", "extra-column", "latin-1-header", "repeated-column",
        "semicolon-separated", "tab-separated", "bar-separated"])
def test_a_bad_header_is_refused_naming_the_file_and_column(tmp_path, schema_types, content, says):
    good = _good_span(tmp_path)
    bad = _write(tmp_path / "span-2008" / "penguins.csv", content)
    with pytest.raises(example_gen.CsvFileError) as raised:
        example_gen.check_headers([good, bad], list(schema_types))
    message = str(raised.value)
    assert says in message and bad in message and "\n" not in message


@pytest.mark.parametrize("row, fields", [
    ("Adelie,Torgersen,39.1,18.7,181,3750,male,2007,extra", 9),
    ("Adelie,Torgersen,39.1,18.7,181,3750", 6),
    ('Adelie,"Torgersen,39.1,18.7,181,3750,male,2007', 2),
], ids=["extra-field", "missing-fields", "unclosed-quote"])
def test_a_row_with_another_number_of_fields_is_named(tmp_path, schema_types, row, fields):
    path = _write(tmp_path / "bad.csv", "\n".join([HEADER, ROWS[0], row]) + "\n")
    with pytest.raises(example_gen.CsvFileError) as raised:
        list(example_gen.read_examples(path, schema_types))
    message = str(raised.value)
    assert f"data row 2 has {fields} field(s) where the header has 8" in message
    assert path in message and "\n" not in message


@pytest.mark.parametrize("content", [HEADER, HEADER + "\n", HEADER + "\r\n\r\n"],
                         ids=["no-newline", "newline", "blank-lines"])
def test_a_header_without_rows_gives_no_examples(tmp_path, schema_types, content):
    """Left to the data gate, which stops on the row count; pyarrow's own error named no cause."""
    path = _write(tmp_path / "header-only.csv", content)
    assert _examples(path, schema_types) == []


@pytest.mark.parametrize("text", ["NaN", "nan"])
def test_nan_text_in_a_float_column_is_a_blank(tmp_path, schema_types, text):
    """A NaN kept as a number made Transform's mean, and so every scaled value, NaN."""
    row = ROWS[0].replace("39.1", text, 1)
    path = _write(tmp_path / "nan.csv", "\n".join([HEADER, ROWS[0], row]) + "\n")
    first, second = _examples(path, schema_types)
    assert _values(first, "bill_length_mm") == pytest.approx([39.1])
    assert _values(second, "bill_length_mm") == []
    assert _values(second, "bill_depth_mm") == pytest.approx([18.7])


def test_a_data_set_that_differs_from_the_schema_as_a_whole_passes_to_validation(tmp_path, schema_types):
    # New data being adapted: no file matches the schema, so validation names the columns and
    # SchemaGen infers the schema `tfxt schema refresh` needs.
    first = _write(tmp_path / "span-1" / "fruit.csv", "fruit,weight_g\napple,180\n")
    second = _write(tmp_path / "span-2" / "fruit.csv", "weight_g,fruit\n175,pear\n")
    headers = example_gen.check_headers([first, second], list(schema_types))
    assert set(headers[second]) == {"fruit", "weight_g"}
    [example] = _examples(second, schema_types)
    assert _values(example, "weight_g") == [175] and _values(example, "fruit") == [b"pear"]


@pytest.mark.parametrize("row, says", [
    ("Adelie,Torgersen,thirty-nine,18.7,181,3750,male,2007",
     "column 'bill_length_mm': 'thirty-nine' is not a FLOAT"),
    ("Adelie,Torgersen,39.1,18.7,181.5,3750,male,2007", "column 'flipper_length_mm': '181.5' is not an INT"),
    ("Adelie,Torgersen,39.1,18.7,181,3750,m\u00e4nnlich,2007", "column 'sex': the text is not UTF-8"),
    ("Adelie,Torgersen,39.1,18.7,181,99999999999999999999,male,2007",
     "column 'body_mass_g': '99999999999999999999' is out of the INT range"),
    ("Adelie,Torgersen,-inf,18.7,181,3750,male,2007",
     "column 'bill_length_mm': '-inf' is not a finite number that a FLOAT (32-bit) can hold"),
    ("Adelie,Torgersen,39.1,1e39,181,3750,male,2007",
     "column 'bill_depth_mm': '1e+39' is not a finite number that a FLOAT (32-bit) can hold"),
], ids=["text-in-float", "fraction-in-int", "latin-1-value", "int-out-of-range", "infinite-float",
        "float-beyond-float32"])
def test_a_value_that_does_not_fit_its_type_names_file_row_and_column(tmp_path, schema_types, row, says):
    path = _write(tmp_path / "bad.csv", "\n".join([HEADER, ROWS[0], row]) + "\n", encoding="latin-1")
    with pytest.raises(example_gen.CsvFileError) as raised:
        list(example_gen.read_examples(path, schema_types))
    message = str(raised.value)
    assert says in message and path in message and "data row 2" in message and "\n" not in message


def _deterministic(record: bytes) -> bytes:
    return tf.train.Example.FromString(record).SerializeToString(deterministic=True)


def test_examples_are_protobufs_deterministic_bytes_on_the_bundled_spans(schema_types):
    # The bytes are the hash split's key: they must be protobuf's, not only parse to the same example.
    paths = sorted(tf.io.gfile.glob(os.path.join(DATA_ROOT, "span-*", "*.csv")))
    records = [record for path in paths for record in example_gen.read_examples(path, schema_types)]
    assert len(records) == 344
    assert records == [_deterministic(record) for record in records]


def _wide_cell(rng, kind, row):
    """One generated cell of a column of `kind`; about one in six is blank."""
    import math

    if rng.random() < 1 / 6:
        return ""
    if kind == "INT":
        return str(rng.choice([0, 1, -1, 127, 128, 300, -300, 2**31, 2**62, -(2**63), 2**63 - 1,
                               rng.randrange(-10**12, 10**12)]))
    if kind == "FLOAT":
        # Finite float32 values only: an infinite FLOAT stops the run and NaN reads as a blank.
        return repr(rng.choice([0.0, -0.0, 1.5, -2.25, 1e-45, 3.4e38, -3.4e38, math.pi,
                                rng.uniform(-1e6, 1e6)]))
    return rng.choice(["Biscoe", "m\u00e4nnlich", "\u4f01\u9e45", "\U0001f427 penguin", "NA", " padded ",
                       "comma, inside", "x" * 300, f"row {row}"])


def test_examples_are_protobufs_deterministic_bytes_on_a_wide_generated_csv(tmp_path):
    import csv as csv_module
    import random

    import numpy as np

    rng = random.Random(7)
    # Unsorted names, long and non-ASCII ones; three columns the schema lacks (types inferred).
    kinds = {f"{kind.lower()}_{index}": kind for index in range(6) for kind in ("INT", "FLOAT", "BYTES")}
    kinds.update({"\u00fcberlang_" + "n" * 150: "BYTES", "Zeta": "FLOAT", "alpha": "INT"})
    names = sorted(kinds, key=lambda name: rng.random())
    schema_types = {name: kind for name, kind in kinds.items() if name not in ("Zeta", "alpha", "bytes_5")}
    rows = [[_wide_cell(rng, kinds[name], row) for name in names] for row in range(20_000)]
    path = tmp_path / "wide.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv_module.writer(f).writerows([names, *rows])
    records = list(example_gen.read_examples(str(path), schema_types))
    assert len(records) == len(rows) > 2 * example_gen.BATCH_ROWS  # several batches
    assert records == [_deterministic(record) for record in records]
    for record, row in zip(records[::97], rows[::97], strict=True):  # and the values are the CSV's
        example = tf.train.Example.FromString(record)
        for name, cell in zip(names, row, strict=True):
            values = _values(example, name)
            if kinds[name] == "INT" or cell == "":
                assert values == ([int(cell)] if cell else []), name
            elif kinds[name] == "FLOAT":
                np.testing.assert_array_equal(values, [np.float32(float(cell))], err_msg=name)
            else:
                assert values == [cell.encode("utf-8")], name

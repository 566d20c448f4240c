"""The synthetic data generator produces what it claims: the source's columns, class balance,
per-class categories and measurements, missing rates, seeded output, and data that the
curated schema accepts."""

import filecmp
import io
import os
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.ops import synthetic
from runners.cli.main import main

ROWS = 30_000


@pytest.fixture(scope="module")
def source():
    return synthetic.read_source()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    paths = synthetic.write_spans(str(out), ROWS, spans=(2007, 2008, 2009), seed=7)
    return out, paths, pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def test_layout_columns_and_row_count(generated, source):
    out, paths, frame = generated
    assert [os.path.relpath(p, out) for p in paths] == [
        f"span-{s}/penguins.csv" for s in (2007, 2008, 2009)]
    assert list(frame.columns) == list(source.columns)
    assert len(frame) == ROWS
    assert sorted(frame["year"].unique()) == [2007, 2008, 2009]
    assert frame.groupby("year").size().max() - frame.groupby("year").size().min() <= 1


def test_class_balance_and_categories_follow_the_source(generated, source):
    _, _, frame = generated
    expected = source["species"].value_counts(normalize=True)
    actual = frame["species"].value_counts(normalize=True)
    assert set(actual.index) == set(expected.index)
    for species in expected.index:
        assert abs(actual[species] - expected[species]) < 0.015, species
        # Class-conditional: a species appears only on the islands it lives on in the source.
        source_islands = set(source[source.species == species].island)
        assert set(frame[frame.species == species].island) == source_islands
    assert set(frame["sex"].dropna()) == set(source["sex"].dropna())


def test_measurements_are_class_conditional(generated, source):
    _, _, frame = generated
    source_means = source.groupby("species").mean(numeric_only=True)
    means = frame.groupby("species").mean(numeric_only=True)
    for column in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        for species in source_means.index:
            assert means.loc[species, column] == pytest.approx(
                source_means.loc[species, column], rel=0.02), (species, column)
    # Gentoo are the heaviest in the source; so they must be here.
    assert means["body_mass_g"].idxmax() == source_means["body_mass_g"].idxmax()


def test_missing_value_rates_match_the_source(generated, source):
    _, _, frame = generated
    for column in ("bill_length_mm", "body_mass_g", "sex"):
        expected = source[column].isna().mean()
        assert abs(frame[column].isna().mean() - expected) < 0.006, column
    assert frame[["species", "island", "year"]].notna().all().all()


def test_same_seed_same_files_other_seed_other_data(tmp_path):
    first = synthetic.write_spans(str(tmp_path / "a"), 500, spans=(1, 2), seed=3)
    second = synthetic.write_spans(str(tmp_path / "b"), 500, spans=(1, 2), seed=3)
    third = synthetic.write_spans(str(tmp_path / "c"), 500, spans=(1, 2), seed=4)
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(first, second, strict=True))
    assert not filecmp.cmp(first[0], third[0], shallow=False)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="rows must be at least 1"):
        synthetic.write_spans(str(tmp_path), 0)
    result = CliRunner().invoke(main, ["synth", "--rows", "10", "--out", str(tmp_path),
                                       "--spans", "2007,x"])
    assert result.exit_code != 0 and "--spans" in result.output


def test_cli_writes_spans(tmp_path):
    result = CliRunner().invoke(main, ["synth", "--rows", "100", "--out", str(tmp_path / "d"),
                                       "--spans", "2010,2011", "--seed", "1"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "d" / "span-2011" / "penguins.csv")
    assert len(frame) == 50 and set(frame["year"]) == {2011}


def test_synthetic_data_passes_the_curated_schema(generated, repo_root):
    """What ExampleValidator checks: statistics of the rows against schema/schema.pbtxt.

    The rows become tf.Examples the way CsvExampleGen writes them (a missing
    value is an empty list of the column's type), then TFDV computes their
    statistics in memory and validates them.
    """
    import pyarrow as pa
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.coders import example_coder

    _, _, frame = generated
    schema = tfdv.load_schema_text(os.path.join(repo_root, "schema", "schema.pbtxt"))
    types = {f.name: f.type for f in schema.feature}
    serialized = []
    for row in frame.sample(n=5000, random_state=0).itertuples(index=False):
        example = tf.train.Example()
        for name, value in row._asdict().items():
            feature = example.features.feature[name]
            present = not pd.isna(value)
            if types[name] == schema_pb2.INT:
                feature.int64_list.value.extend([int(value)] if present else [])
            elif types[name] == schema_pb2.FLOAT:
                feature.float_list.value.extend([float(value)] if present else [])
            else:
                feature.bytes_list.value.extend([str(value).encode()] if present else [])
        serialized.append(example.SerializeToString())
    record_batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(serialized)
    assert isinstance(record_batch, pa.RecordBatch)
    statistics = stats_impl.generate_statistics_in_memory(record_batch)
    anomalies = tfdv.validate_statistics(statistics, schema)
    assert not anomalies.anomaly_info, {k: v.description for k, v in anomalies.anomaly_info.items()}
    # The same check sees a category the schema does not know.
    bad = tf.train.Example.FromString(serialized[0])
    bad.features.feature["island"].bytes_list.value[:] = [b"Atlantis"]
    bad_batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
        serialized[1:] + [bad.SerializeToString()])
    bad_anomalies = tfdv.validate_statistics(
        stats_impl.generate_statistics_in_memory(bad_batch), schema)
    assert "island" in bad_anomalies.anomaly_info


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_synth_shows_progress_on_a_terminal_only(tmp_path, monkeypatch, terminal):
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    synthetic.write_spans(str(tmp_path), 600, [1, 2], seed=3)
    if terminal:
        assert "synthetic rows" in stderr.getvalue() and "/600" in stderr.getvalue()
    else:
        assert stderr.getvalue() == ""

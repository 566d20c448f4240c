"""Faults of live data, each stopped before Transform with one clear line, or read correctly.

Every case runs the real pipeline, cut after its data gate (`run_to_gate`): RunRecord,
CsvExampleGen, StatisticsGen, SchemaGen, ImportSchemaGen, ExampleValidator and AnomaliesGate, the
components that decide whether data may reach Transform. That costs seconds instead of minutes, and
one run covers each mechanism; the many header and encoding variants are unit-tested in
`tests/test_example_gen.py`. A model version sits in the serving directory before each run and
must be byte-identical after it.
"""

import csv
import hashlib
import io
import os
import shutil

import pytest

from pipeline.config import load_config
from pipeline.ops.run import EXIT_DATA_STOPPED
from tests.conftest import DATA_ROOT, SCHEMA_PATH

pytestmark = pytest.mark.e2e

GATE = "AnomaliesGate"


def run_to_gate(directory, data_root, **overrides):
    """Runs the pipeline up to the AnomaliesGate; returns (config, exit code, console output)."""
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.ops.run import run_and_report
    from pipeline.pipeline import create_pipeline

    config = load_config(overrides={"output_dir": str(directory / "outputs"), "data_root": str(data_root),
                                    "schema_path": SCHEMA_PATH, **overrides}, base_dir=str(directory))
    # TFX's partial run: the gate and every node it depends on, nothing downstream.
    run_options = tfx_pipeline.RunOptions(to_nodes=[GATE])
    stream = io.StringIO()
    code = run_and_report(
        config, lambda: LocalDagRunner().run(create_pipeline(config), run_options=run_options), stream)
    return config, code, stream.getvalue()


def _tree_hash(folder):
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.fixture
def pushed(tmp_path):
    """A previously pushed model version in the serving directory the runs write to; its hash."""
    version = tmp_path / "outputs" / "serving_model" / "penguin" / "1700000000"
    (version / "variables").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(os.urandom(2048))
    (version / "variables" / "variables.index").write_bytes(os.urandom(256))
    return version, _tree_hash(version)


def _spans(tmp_path, new_span=None, rows=None, header=None):
    """The bundled spans plus an optional span 2010 of `rows` (dicts) under `header`."""
    data_root = tmp_path / "data"
    shutil.copytree(DATA_ROOT, data_root)
    if new_span is not None:
        path = data_root / "span-2010" / "penguins.csv"
        path.parent.mkdir()
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, header)
            writer.writeheader()
            writer.writerows(rows)
    return data_root


def _bundled_rows():
    with open(os.path.join(DATA_ROOT, "span-2009", "penguins.csv")) as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), [dict(row, year="2010") for row in reader]


def _states(config):
    from pipeline.ops.summary import summarize

    return {n.node_id: n.state for n in summarize(config).nodes}


def _assert_stopped(config, code, output, pushed, failed_node, *phrases):
    version, before = pushed
    assert code == EXIT_DATA_STOPPED, output[-3000:]
    failed = output.split("Run FAILED: ", 1)[1]
    for phrase in phrases:
        assert phrase in failed, failed
    assert "Traceback" not in output
    assert _states(config)[failed_node] == "FAILED"
    assert _tree_hash(version) == before


def test_a_span_whose_header_has_an_extra_column_stops_at_example_gen(tmp_path, pushed):
    header, rows = _bundled_rows()
    data_root = _spans(tmp_path, 2010, [dict(r, comment="ok") for r in rows], header + ["comment"])
    config, code, output = run_to_gate(tmp_path, data_root)
    _assert_stopped(config, code, output, pushed, "CsvExampleGen",
                    os.path.join("span-2010", "penguins.csv"), "extra column 'comment'")
    assert "Anomalies: none" not in output


def test_text_in_a_float_column_stops_at_example_gen_naming_file_row_and_column(tmp_path, pushed):
    header, rows = _bundled_rows()
    rows[3]["bill_length_mm"] = "thirty-nine"
    data_root = _spans(tmp_path, 2010, rows, header)
    config, code, output = run_to_gate(tmp_path, data_root)
    _assert_stopped(config, code, output, pushed, "CsvExampleGen", os.path.join("span-2010", "penguins.csv"),
                    "data row 4, column 'bill_length_mm': 'thirty-nine' is not a FLOAT")


def test_whole_numbers_in_a_float_column_pass_validation(tmp_path, pushed):
    header, rows = _bundled_rows()
    for row in rows:
        for column in ("bill_length_mm", "bill_depth_mm"):
            row[column] = str(round(float(row[column]))) if row[column] else ""
    data_root = _spans(tmp_path, 2010, rows, header)
    config, code, output = run_to_gate(tmp_path, data_root, spans=[2010])
    assert code == 0, output[-3000:]
    assert _states(config)[GATE] == "COMPLETE"
    assert "Anomalies: none" in output
    assert _tree_hash(pushed[0]) == pushed[1]


def test_too_many_blank_values_stop_at_the_gate_naming_the_column(tmp_path, pushed):
    header, rows = _bundled_rows()
    for index, row in enumerate(rows):
        if index % 3 == 0:
            row["body_mass_g"] = ""
    data_root = _spans(tmp_path, 2010, rows, header)
    config, code, output = run_to_gate(tmp_path, data_root, spans=[2010])
    _assert_stopped(config, code, output, pushed, GATE, "column 'body_mass_g'", "are blank",
                    "validation.max_blank_fraction (10%)")
    # `sex` is blank in a few rows too, within its tolerance: not reported.
    assert "column 'sex'" not in output


def test_a_header_only_span_stops_at_the_gate_on_its_row_count(tmp_path, pushed):
    header, _ = _bundled_rows()
    data_root = _spans(tmp_path, 2010, [], header)
    config, code, output = run_to_gate(tmp_path, data_root, spans=[2010])
    _assert_stopped(config, code, output, pushed, GATE, "split 'train'", "split 'eval'",
                    "0 examples, fewer than validation.min_examples_per_split (20)")

"""Edge export: conversion, int8 dtype and op checks, preprocessing parity with the
Transform graph, the parity gate both ways, the device predictor on real rows,
and the config switch.

End-to-end tests read the artifacts of the shared `pushed_pipeline` run, whose
default config includes the EdgeExport component.
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pipeline.config import ConfigError, load_config
from tests.conftest import DATA_ROOT, SCHEMA_PATH

PREDICT_TIMEOUT_SECONDS = 300


def _config(**overrides):
    return load_config(overrides={"data_root": DATA_ROOT, "schema_path": SCHEMA_PATH, **overrides})


# ---------------------------------------------------------------- converter output


def test_native_stderr_is_held_back_on_success_and_shown_on_failure(capfd, caplog):
    from edge import export

    with caplog.at_level("DEBUG", logger=export.__name__):
        with export.native_stderr_quieted():
            os.write(2, b"W0000 native converter noise\n")
    assert "native converter noise" not in capfd.readouterr().err
    assert "W0000 native converter noise" in caplog.text
    with pytest.raises(RuntimeError, match="conversion failed"):
        with export.native_stderr_quieted():
            os.write(2, b"E0000 why it failed\n")
            raise RuntimeError("conversion failed")
    assert "E0000 why it failed" in capfd.readouterr().err
    os.write(2, b"after\n")  # file descriptor 2 is the real stderr again
    assert "after" in capfd.readouterr().err


# ---------------------------------------------------------------- device predictor's quantization


@pytest.mark.parametrize("dtype, scale, zero_point", [
    (np.int8, 0.0247, -3), (np.uint8, 0.0039, 128), (np.int8, 0.00390625, -128),
])
def test_predictor_quantizes_like_the_formula_and_saturates(dtype, scale, zero_point):
    """The predictor's precomputed (de)quantization equals the plain formulas, out-of-range
    inputs included (they must saturate, not wrap around)."""
    from edge.predict import dequantizer, quantizer

    details = {"dtype": dtype, "quantization": (scale, zero_point)}
    info = np.iinfo(dtype)
    values = np.concatenate([
        np.random.default_rng(0).normal(0.0, 2.0, size=500),
        [0.0, (info.max - zero_point + 20) * scale, (info.min - zero_point - 20) * scale,
         (0.5 - zero_point) * scale, (1.5 - zero_point) * scale],  # saturation, ties to even
    ]).astype(np.float32).reshape(1, -1)
    expected = np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)
    quantized = quantizer(details)(values)
    assert quantized.dtype == dtype
    np.testing.assert_array_equal(quantized, expected)
    assert quantized[0, 501] == info.max and quantized[0, 502] == info.min

    every_value = np.arange(info.min, info.max + 1).astype(dtype).reshape(1, -1)
    dequantized = dequantizer(details)(every_value)
    assert dequantized.dtype == np.float32 and dequantized.shape == every_value.shape
    np.testing.assert_array_equal(dequantized,
                                  (every_value.astype(np.float32) - np.float32(zero_point))
                                  * np.float32(scale))

    float_details = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantizer(float_details)(values) is values and dequantizer(float_details)(values) is values


# ---------------------------------------------------------------- config and wiring


def test_edge_component_follows_the_config_switch():
    from pipeline.pipeline import create_pipeline

    default = create_pipeline(_config())
    edge_nodes = [c for c in default.components if c.id == "EdgeExport"]
    assert len(edge_nodes) == 1
    assert edge_nodes[0].exec_properties["max_accuracy_drop"] == 0.01
    assert set(edge_nodes[0].inputs) == {"model", "model_blessing", "transform_graph", "examples"}

    disabled = create_pipeline(_config(edge={"enabled": False}))
    assert "EdgeExport" not in [c.id for c in disabled.components]
    assert len(disabled.components) == len(default.components) - 1


@pytest.mark.parametrize("edge, field", [
    ({"max_accuracy_drop": 1.5}, "edge.max_accuracy_drop"),
    ({"max_accuracy_drop": -0.01}, "edge.max_accuracy_drop"),
    ({"representative_examples": 0}, "edge.representative_examples"),
])
def test_bad_edge_config_names_the_field(edge, field):
    with pytest.raises(ConfigError, match=field):
        _config(edge=edge)


# ---------------------------------------------------------------- the gate as a function


def _results(int8_accuracy):
    return {
        "saved_model": {"accuracy": 0.95, "agreement": 1.0, "examples": 100},
        "float32": {"accuracy": 0.95, "agreement": 1.0, "examples": 100},
        "int8": {"accuracy": int8_accuracy, "agreement": 0.97, "examples": 100},
    }


def test_gate_blesses_within_threshold_and_rejects_beyond():
    from edge.parity import edge_blessing, format_blessing

    ready = {"ready": True, "problems": []}
    passed = edge_blessing(_results(0.94), 0.01, ready)
    assert passed["blessed"] and passed["variants"]["int8"]["deployable"] and not passed["reasons"]

    failed = edge_blessing(_results(0.93), 0.01, ready)
    assert not failed["blessed"]
    assert failed["variants"]["float32"]["deployable"]
    assert len(failed["reasons"]) == 1 and failed["reasons"][0].startswith("int8: accuracy 0.930")
    assert "2.0 points below" in failed["reasons"][0]
    assert "NOT deployable" in "\n".join(format_blessing(failed))

    not_ready = edge_blessing(_results(0.95), 0.01, {"ready": False, "problems": ["op TANHX unsupported"]})
    assert not not_ready["blessed"] and "not Edge TPU ready: op TANHX" in not_ready["reasons"][0]


def test_a_model_the_evaluator_did_not_bless_is_not_exported(tmp_path):
    from edge.parity import format_blessing
    from pipeline.components.edge_export import export_if_blessed

    blessing = export_if_blessed(
        model_blessed=False, serving_model_dir=str(tmp_path / "absent_model"),
        transform_graph_dir=str(tmp_path / "absent_transform"), train_dir=str(tmp_path / "absent"),
        eval_dir=str(tmp_path / "absent"), output_dir=str(tmp_path / "edge"),
        max_accuracy_drop=0.01, representative_examples=10)
    assert not blessing["blessed"]
    assert sorted(os.listdir(tmp_path / "edge")) == ["NOT_EDGE_BLESSED", "edge_blessing.json"]
    assert format_blessing(blessing) == ["Edge: not exported (the Evaluator did not bless the model)"]


# ---------------------------------------------------------------- end to end, on the shared run


@pytest.fixture(scope="module")
def edge_run(pushed_pipeline):
    """Paths of the shared run: edge export folder, pushed model, transform graph, examples."""
    from pipeline import mlmd

    config = pushed_pipeline.config
    nodes = {n.node_id: n for n in mlmd.run_executions(mlmd.open_store(config), config.pipeline_name)}
    node = nodes.get("EdgeExport")
    assert node is not None and node.state == "COMPLETE", [(n.node_id, n.state) for n in nodes.values()]
    pushed = nodes["Pusher"].outputs["pushed_model"][0].custom_properties
    return {
        "edge_dir": node.outputs["edge_model"][0].uri,
        "artifact": node.outputs["edge_model"][0],
        "model_dir": pushed["pushed_destination"].string_value,
        "transform_graph": nodes["Transform"].outputs["transform_graph"][0].uri,
        "examples": nodes["CsvExampleGen"].outputs["examples"][0].uri,
        "output": pushed_pipeline.output,
        "config_path": pushed_pipeline.config_path,
    }


@pytest.fixture(scope="module")
def blessing(edge_run):
    with open(os.path.join(edge_run["edge_dir"], "edge_blessing.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def spec(edge_run):
    with open(os.path.join(edge_run["edge_dir"], "preprocessing_spec.json")) as f:
        return json.load(f)


@pytest.mark.e2e
def test_every_variant_is_written_with_its_size(edge_run, blessing):
    edge_dir = edge_run["edge_dir"]
    from edge.export import VARIANT_FILES, size_bytes

    assert set(blessing["variants"]) == set(VARIANT_FILES)
    for name, result in blessing["variants"].items():
        path = os.path.join(edge_dir, result["path"])
        assert os.path.exists(path), name
        assert result["bytes"] == size_bytes(path) > 0
    assert os.path.isfile(os.path.join(edge_dir, "saved_model", "saved_model.pb"))
    sizes = {name: r["bytes"] for name, r in blessing["variants"].items()}
    assert sizes["int8"] < sizes["float32"] < sizes["saved_model"]
    for name in ("preprocessing_spec.json", "edgetpu_readiness.json", "predict.py", "EDGE_BLESSED"):
        assert os.path.isfile(os.path.join(edge_dir, name)), name


@pytest.mark.e2e
def test_make_run_leaves_a_deployable_int8_model(edge_run, blessing):
    assert blessing["blessed"], blessing["reasons"]
    int8 = blessing["variants"]["int8"]
    assert int8["deployable"] and int8["path"] == "model_int8.tflite"
    assert blessing["reference_accuracy"] - int8["accuracy"] <= blessing["max_accuracy_drop"] + 1e-9
    assert int8["examples"] > 50
    assert edge_run["artifact"].custom_properties["blessed"].int_value == 1
    assert "Edge blessed: yes" in edge_run["output"]


@pytest.mark.e2e
def test_int8_model_is_int8_with_static_batch_one(edge_run, spec):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=os.path.join(edge_run["edge_dir"], "model_int8.tflite"))
    (model_input,), (model_output,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert model_input["dtype"] == np.int8 and model_output["dtype"] == np.int8
    assert list(model_input["shape"]) == [1, spec["feature_vector_size"]]
    assert list(model_input["shape_signature"]) == [1, spec["feature_vector_size"]]
    assert list(model_output["shape"]) == [1, len(spec["label_names"])]
    assert model_input["quantization"][0] > 0


@pytest.mark.e2e
def test_readiness_report_accepts_int8_and_rejects_float(edge_run):
    from edge.readiness import EDGETPU_SUPPORTED_OPS, check_edgetpu_readiness

    with open(os.path.join(edge_run["edge_dir"], "edgetpu_readiness.json")) as f:
        report = json.load(f)
    assert report["ready"] and report["problems"] == []
    assert "FULLY_CONNECTED" in report["ops"] and set(report["ops"]) <= EDGETPU_SUPPORTED_OPS
    assert {t["dtype"] for t in report["tensors"]} <= {"INT8", "UINT8", "INT32"}
    assert any(t["dtype"] == "INT32" for t in report["tensors"])  # biases

    float_report = check_edgetpu_readiness(os.path.join(edge_run["edge_dir"], "model_float32.tflite"))
    assert not float_report["ready"]
    assert any("FLOAT32, not int8/uint8" in p for p in float_report["problems"])


@pytest.mark.e2e
def test_parity_reference_is_the_saved_models_own_serving_signature(edge_run):
    """The export loads the serving model once, with Keras, and takes the parity gate's reference
    from it: its serving_default must score what the SavedModel loaded on its own scores."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from edge.export import load_serving_model
    from edge.parity import read_rows
    from edge.spec import to_example

    saved_model = os.path.join(edge_run["edge_dir"], "saved_model")
    rows = read_rows(os.path.join(edge_run["examples"], "Split-eval"))
    raw_spec = tft.TFTransformOutput(edge_run["transform_graph"]).raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k != "species"}
    examples = tf.constant([to_example(row, serving_spec).SerializeToString() for row in rows])
    from_keras = load_serving_model(saved_model).signatures["serving_default"](examples=examples)
    alone = tf.saved_model.load(saved_model).signatures["serving_default"](examples=examples)
    np.testing.assert_allclose(from_keras["scores"].numpy(), alone["scores"].numpy(), rtol=0, atol=1e-6)
    assert len(set(np.argmax(alone["scores"].numpy(), axis=-1).tolist())) == 3  # not a constant


@pytest.mark.e2e
def test_spec_reproduces_the_transform_graph(edge_run, spec):
    import tensorflow_transform as tft

    from edge.spec import apply_spec, encode_transformed, transform_rows

    rows = _csv_rows(10)
    rows += [
        {**rows[0], "bill_length_mm": "", "body_mass_g": None},  # missing numerics
        {**rows[1], "sex": ""},                                    # missing categorical
        {**rows[2], "island": "Atlantis", "sex": "unknown"},      # unseen categories
        {**rows[3], "flipper_length_mm": "187.4"},                # int column with a fraction
    ]
    output = tft.TFTransformOutput(edge_run["transform_graph"])
    expected = encode_transformed(spec, transform_rows(output, rows))
    actual = np.stack([apply_spec(spec, row) for row in rows])
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    island = spec["categorical"][0]
    assert island["name"] == "island" and island["vocabulary"] == [
        v.decode() for v in output.vocabulary_by_name("island_vocabulary")]
    assert actual[-2][4 + len(island["vocabulary"])] == 1.0  # the OOV bucket of island
    assert actual[-4][0] == 0.0  # a missing numeric is the mean, z-score 0


@pytest.mark.e2e
def test_predictor_script_on_csv_and_json_rows(edge_run, tmp_path, spec):
    device_dir = _device_copy(edge_run["edge_dir"], tmp_path)
    rows = _csv_rows(30)
    csv_path = tmp_path / "rows.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path = tmp_path / "rows.json"
    json_path.write_text(json.dumps([{k: v for k, v in row.items() if k != "species"} for row in rows]))

    outputs = {}
    for path in (csv_path, json_path):
        process = _predict(device_dir, ["--model", "model_int8.tflite", "--spec",
                                        "preprocessing_spec.json", str(path)])
        assert process.returncode == 0, process.stderr[-3000:]
        assert "delegate: none (CPU)" in process.stderr
        outputs[path.suffix] = [json.loads(line) for line in process.stdout.splitlines()]
    assert outputs[".csv"] == outputs[".json"]
    predicted = [p["class"] for p in outputs[".csv"]]
    assert len(predicted) == len(rows)
    assert set(predicted) <= set(spec["label_names"])
    accuracy = np.mean([p == row["species"] for p, row in zip(predicted, rows, strict=True)])
    assert accuracy >= 0.9, (predicted, [r["species"] for r in rows])
    assert all(abs(sum(p["scores"].values()) - 1.0) < 0.05 for p in outputs[".csv"])


@pytest.mark.e2e
def test_predictor_explains_spec_and_model_mismatch(edge_run, tmp_path, spec):
    device_dir = _device_copy(edge_run["edge_dir"], tmp_path)
    broken = json.loads(json.dumps(spec))
    broken["categorical"][0]["vocabulary"] = []
    (device_dir / "no_vocab.json").write_text(json.dumps(broken))
    process = _predict(device_dir, ["--model", "model_int8.tflite", "--spec", "no_vocab.json", "-"], "{}")
    assert process.returncode == 2
    assert "Categorical feature 'island' in the spec has no vocabulary" in process.stderr

    wider = json.loads(json.dumps(spec))
    wider["numeric"].append({"name": "tail_length_mm", "mean": 1.0, "std": 1.0})
    del wider["feature_vector_size"]
    (device_dir / "wider.json").write_text(json.dumps(wider))
    process = _predict(device_dir, ["--model", "model_int8.tflite", "--spec", "wider.json", "-"], "{}")
    assert process.returncode == 2
    assert (f"takes {spec['feature_vector_size']} features but the spec encodes "
            f"{spec['feature_vector_size'] + 1}") in process.stderr
    assert "Traceback" not in process.stderr


@pytest.mark.e2e
def test_gate_rejects_a_degraded_int8_model_and_the_cli_says_so(edge_run, tmp_path, monkeypatch):
    """A badly calibrated int8 model (inputs squeezed into a tiny range) must not be deployable."""
    from click.testing import CliRunner

    from edge import export
    from runners.cli.main import main

    convert = export.convert_tflite

    def badly_calibrated(classifier, variant, representative_vectors=None):
        if variant == "int8":
            representative_vectors = np.asarray(representative_vectors) * 0.001
        return convert(classifier, variant, representative_vectors)

    monkeypatch.setattr(export, "convert_tflite", badly_calibrated)
    output_dir = tmp_path / "edge"
    result = CliRunner().invoke(main, [
        "edge", "export", "--config", edge_run["config_path"], "--model-dir", edge_run["model_dir"],
        "--output-dir", str(output_dir)])
    assert result.exit_code == 1, result.output
    assert "Edge blessed: no (int8 model NOT deployable)" in result.output
    assert "int8: accuracy" in result.output and "points below the SavedModel's" in result.output
    assert os.path.isfile(output_dir / "rejected" / "model_int8.tflite")
    assert not os.path.exists(output_dir / "model_int8.tflite")
    assert os.path.isfile(output_dir / "model_float32.tflite")
    assert os.path.isfile(output_dir / "NOT_EDGE_BLESSED")


# ---------------------------------------------------------------- helpers


def _csv_rows(count):
    """Real raw rows from the bundled data, with every column as the CSV text."""
    path = os.path.join(DATA_ROOT, sorted(os.listdir(DATA_ROOT))[-1], "penguins.csv")
    with open(path) as f:
        rows = [row for row in csv.DictReader(f) if row["bill_length_mm"]]
    step = max(1, len(rows) // count)
    return rows[::step][:count]


def _device_copy(edge_dir, tmp_path):
    """Only what a device gets: the script, the model and the spec, away from the repo."""
    device_dir = tmp_path / "device"
    device_dir.mkdir()
    for name in ("predict.py", "model_int8.tflite", "preprocessing_spec.json"):
        shutil.copy(os.path.join(edge_dir, name), device_dir / name)
    return device_dir


def _predict(device_dir, args, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "predict.py", *args], cwd=device_dir, env=env, input=stdin,
                          capture_output=True, text=True, timeout=PREDICT_TIMEOUT_SECONDS)


@pytest.mark.e2e
def test_edge_export_reads_and_writes_remote_uris(edge_run, ram_filesystem, tmp_path, monkeypatch):
    """Model, Transform output and examples on a non-local filesystem, and the export written there."""
    from tfx.dsl.io import fileio
    from tfx.utils import io_utils

    from edge.parity import read_blessing
    from runners.cli.edge import run_export

    monkeypatch.chdir(tmp_path)
    remote = f"{ram_filesystem}edge-e2e"
    for name in ("model_dir", "transform_graph", "examples"):
        # Without assets.extra/: TensorFlow's ram:// lists "assets/" by name prefix, so it would also
        # report a phantom "assets/.extra" there (gs:// has no such quirk; edge export ignores it).
        io_utils.copy_dir(edge_run[name], f"{remote}/{name}", deny_regex_patterns=[r"assets\.extra"])
    output = f"{remote}/edge_model"
    blessing = run_export(f"{remote}/model_dir", f"{remote}/transform_graph", f"{remote}/examples", output,
                          0.01, 50)
    assert blessing["blessed"], blessing["reasons"]
    assert read_blessing(output)["variants"]["int8"]["deployable"]
    for name in ("model_int8.tflite", "preprocessing_spec.json", "predict.py", "saved_model/saved_model.pb"):
        assert fileio.exists(f"{output}/{name}"), name
    assert not os.path.exists(tmp_path / "ram:"), "a remote URI was written as a local path"

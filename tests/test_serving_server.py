"""The local server's TF Serving behaviour on a tiny SavedModel built here (no pipeline run).

Version policy and label rules of `serving.model_store` (a broken version never
replaces a healthy one; a label never moves to a version that is not loaded),
and the strict inputs and status codes of the REST and gRPC front ends: each
bad request gets TF Serving's status, and the server keeps answering after it.
"""

import base64
import json
import os
import shutil
import socket
import time

import numpy as np
import pytest

from serving.server_files import STABLE, model_server_config, write_models_config

MODEL = "tiny"
WAIT_SECONDS = 120


def _build_tiny_model(path: str) -> None:
    """A SavedModel with TF Serving's three shapes of signature, small enough to load in a second.

    - serving_default: serialized tf.Examples with float feature `a` (and int64 `n`) ->
      classes, scores (what :classify takes);
    - predict_x: float32 `x` -> `y` = 2x (a tensor input for :predict).
    """
    import tensorflow as tf

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def classify(self, examples):
            parsed = tf.io.parse_example(examples, {
                "a": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
                "n": tf.io.FixedLenFeature([1], tf.int64, default_value=[0])})
            logits = tf.concat([parsed["a"], -parsed["a"] + tf.cast(parsed["n"], tf.float32)], axis=1)
            scores = tf.nn.softmax(logits)
            classes = tf.tile(tf.constant([["pos", "neg"]]), [tf.shape(scores)[0], 1])
            return {"classes": classes, "scores": scores}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict_x(self, x):
            return {"y": 2.0 * x}

    module = Tiny()
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.classify.get_concrete_function(),
        "predict_x": module.predict_x.get_concrete_function()})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("tiny") / "model")
    _build_tiny_model(path)
    return path


def _push(base: str, version: int, source: str) -> None:
    """Copies a version in under a temporary name, then renames it, as a pusher looks to a poller."""
    staging = os.path.join(base, f".staging-{version}")
    shutil.copytree(source, staging)
    os.rename(staging, os.path.join(base, str(version)))


def _push_broken(base: str, version: int) -> None:
    os.makedirs(os.path.join(base, str(version)))
    with open(os.path.join(base, str(version), "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")


def _wait_for(condition, what):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- version policy and labels


def test_a_version_that_fails_to_load_does_not_take_the_model_down(tiny_model, tmp_path):
    """Issue 14, case 1: "latest 1" with a broken new version keeps serving the old one (R8)."""
    from serving.model_store import ModelStore

    base = str(tmp_path / MODEL)
    _push(base, 1, tiny_model)
    store = ModelStore(model_name=MODEL, base_path=base, poll_seconds=0.05, warmup=False)
    store.start()
    try:
        assert store.resolve(MODEL).version == 1
        _push_broken(base, 2)
        _wait_for(lambda: any(v == 2 for v, _, _ in store.status(MODEL)), "the broken version's status")
        assert store.resolve(MODEL).version == 1  # every request still finds a version
        states = {v: (state, message) for v, state, message in store.status(MODEL)}
        assert states[1] == ("AVAILABLE", "")
        assert states[2][0] == "END" and "Failed to load version 2" in states[2][1]
        _push(base, 3, tiny_model)  # a good newer version replaces it as usual
        _wait_for(lambda: store.resolve(MODEL).version == 3, "version 3")
        assert [v for v, state, _ in store.status(MODEL) if state == "AVAILABLE"] == [3]
    finally:
        store.stop()


def test_a_label_never_moves_to_a_version_that_is_not_loaded(tiny_model, tmp_path):
    """Issue 14, case 2: the old rollback (stable moved in one step to an unloaded version) is refused."""
    from serving.model_store import ModelStore

    base = str(tmp_path / MODEL)
    models_config = str(tmp_path / "models.config")
    for version in (1, 2):
        _push(base, version, tiny_model)
    write_models_config(models_config, model_server_config(MODEL, base, {STABLE: 2}))
    store = ModelStore(models_config=models_config, poll_seconds=0.05, warmup=False)
    store.start()
    try:
        assert store.labels(MODEL) == {STABLE: 2}
        loaded_2 = store.resolve(MODEL, label=STABLE)
        # Stable moves to 1, which this config does not load yet: TF Serving refuses it.
        write_models_config(models_config, model_server_config(MODEL, base, {STABLE: 1}))
        _wait_for(lambda: store.last_error, "the refusal")
        assert "not currently available for inference" in store.last_error
        assert store.labels(MODEL) == {STABLE: 2}
        assert store.resolve(MODEL, label=STABLE) is loaded_2
        # The move TF Serving accepts: load 1 first (labelled previous), then move stable.
        write_models_config(models_config, model_server_config(MODEL, base, {STABLE: 2, "previous": 1}))
        _wait_for(lambda: store.labels(MODEL).get("previous") == 1, "version 1 to load")
        write_models_config(models_config, model_server_config(MODEL, base, {STABLE: 1}))
        _wait_for(lambda: store.labels(MODEL) == {STABLE: 1}, "stable to move")
        assert store.last_error is None
    finally:
        store.stop()


def _with_warmup_file(source: str, path: str) -> str:
    """A copy of the tiny model whose warmup file holds one :classify request on serving_default."""
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, model_pb2, prediction_log_pb2

    from serving.warmup import WARMUP_FILE

    shutil.copytree(source, path)
    request = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(name=MODEL))
    example = request.input.example_list.examples.add()
    example.features.feature["a"].float_list.value.append(1.0)
    os.makedirs(os.path.join(path, os.path.dirname(WARMUP_FILE)))
    with tf.io.TFRecordWriter(os.path.join(path, WARMUP_FILE)) as writer:
        writer.write(prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=request)).SerializeToString())
    return path


def test_a_new_version_is_warmed_before_it_takes_traffic(tiny_model, tmp_path, monkeypatch):
    """Issue 14, case 8: a pushed version replays its warmup requests, then calls every other
    signature once, all before any request can reach it, so no first request pays for it."""
    from serving import inference
    from serving.errors import ServingError
    from serving.model_store import ModelStore

    base = str(tmp_path / MODEL)
    _push(base, 1, tiny_model)
    store = ModelStore(model_name=MODEL, base_path=base, poll_seconds=0.05)
    calls = []  # (version called, signature, version a request would get at that moment)
    predict = inference.LoadedVersion.predict

    def served_now():
        try:
            return store.resolve(MODEL).version
        except ServingError:
            return None

    def recording_predict(self, signature_name, inputs, output_filter=None):
        calls.append((self.version, signature_name, served_now()))
        return predict(self, signature_name, inputs, output_filter)

    monkeypatch.setattr(inference.LoadedVersion, "predict", recording_predict)
    store.start()
    try:
        _push(base, 2, _with_warmup_file(tiny_model, str(tmp_path / "warm")))
        _wait_for(lambda: served_now() == 2, "version 2")
        warming = [(signature, served) for version, signature, served in calls if version == 2]
        assert [signature for signature, _ in warming] == ["serving_default", "predict_x"]
        assert all(served == 1 for _, served in warming)  # requests still went to version 1
    finally:
        store.stop()


def test_start_up_labels_need_the_unavailable_labels_flag(tiny_model, tmp_path):
    """R5 at start-up: nothing is loaded yet, so without the flag every label is refused."""
    from serving.model_store import ModelStore

    base = str(tmp_path / MODEL)
    _push(base, 1, tiny_model)
    models_config = str(tmp_path / "models.config")
    write_models_config(models_config, model_server_config(MODEL, base, {STABLE: 1}))
    store = ModelStore(models_config=models_config, warmup=False, allow_unavailable_labels=False)
    store.refresh()
    assert store.model_names() == []
    assert "--allow_version_labels_for_unavailable_models" in store.last_error
    store.allow_unavailable_labels = True
    store.refresh()
    assert store.resolve(MODEL, label=STABLE).version == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_server(tiny_model, tmp_path_factory):
    """A LocalServer over the tiny model (version 1), with its request log."""
    from serving.client import GrpcClient, RestClient
    from serving.model_store import ModelStore
    from serving.request_log import RequestLog
    from serving.server import LocalServer

    root = tmp_path_factory.mktemp("tiny_server")
    base = str(root / MODEL)
    _push(base, 1, tiny_model)
    server = LocalServer(ModelStore(model_name=MODEL, base_path=base, warmup=False), rest_port=0,
                         grpc_port=0, max_request_bytes=64 * 1024,
                         request_log=RequestLog(str(root / "requests.jsonl"))).start()
    rest = RestClient(MODEL, port=server.rest_port)
    rpc = GrpcClient(MODEL, port=server.grpc_port)
    try:
        yield server, rest, rpc
    finally:
        rpc.close()
        rest.close()
        server.stop()


def _still_serving(rest, rpc):
    status, text = rest.raw("POST", rest.model_path() + ":predict",
                            json.dumps({"signature_name": "predict_x", "instances": [1.5]}).encode())
    assert (status, json.loads(text)) == (200, {"predictions": [3.0]})
    response = rpc.predict_tensors({"x": np.array([1.5], np.float32)}, signature_name="predict_x")
    assert list(response.outputs["y"].float_val) == [3.0] or response.outputs["y"].tensor_content


def test_tiny_server_answers(tiny_server):
    server, rest, rpc = tiny_server
    _still_serving(rest, rpc)
    results = rest.call("POST", rest.model_path() + ":classify", {"examples": [{"a": 1.0, "n": 2}]})
    assert [label for label, _ in results["results"][0]] == ["pos", "neg"]


def _examples_b64(*examples):
    import tensorflow as tf

    return [{"b64": base64.b64encode(tf.train.Example(features=tf.train.Features(feature={
        "a": tf.train.Feature(float_list=tf.train.FloatList(value=[a]))})).SerializeToString()).decode()}
        for a in examples]


# (method, path suffix, body, status, part of the error): TF Serving's answer to each.
REST_CASES = [
    # Issue 14, case 4: inputs TF Serving refuses.
    ("POST", ":predict", {"instances": [{"b64": "YWJj!!"}]}, 400, "unable to base64 decode"),
    ("POST", ":predict", {"signature_name": "predict_x", "instances": [1e39]}, 400, "out of float32 range"),
    ("POST", ":classify", {"examples": [{"a": None}]}, 400, "'a' is null"),
    ("POST", ":classify", {"examples": [{"a": 1.0, "n": 2.0}]}, 400, "n"),  # 2.0 is float, n is int64
    # Issue 14, case 5: TF Serving's statuses.
    ("GET", ":predict", None, 400, "Malformed request: GET"),
    ("POST", ":explain", {"instances": [1.0]}, 400, "Malformed request: POST"),
    ("POST", "", {"instances": [1.0]}, 400, "Malformed request: POST"),
    ("PUT", ":predict", {"instances": [1.0]}, 400, "Malformed request: PUT"),
    ("DELETE", "", None, 400, "Malformed request: DELETE"),
]


@pytest.mark.parametrize("method, suffix, body, status, message", REST_CASES,
                         ids=[f"{c[0]} {c[1]} {c[3]} {c[4][:24]}" for c in REST_CASES])
def test_rest_refuses_what_tf_serving_refuses_and_keeps_serving(tiny_server, method, suffix, body, status,
                                                               message):
    server, rest, rpc = tiny_server
    data = json.dumps(body).encode() if body is not None else None
    got_status, text = rest.raw(method, rest.model_path() + suffix, data)
    assert got_status == status, text
    assert message in json.loads(text)["error"]  # always a JSON error body, never an HTML page
    _still_serving(rest, rpc)


def test_rest_statuses_for_paths_labels_nesting_and_chunks(tiny_server):
    import http.client

    server, rest, rpc = tiny_server
    status, text = rest.raw("GET", "/v2/models/tiny")
    assert status == 404 and "error" in json.loads(text)
    # GetModelStatus ignores the label, as TF Serving does: 200 with every version.
    status, text = rest.raw("GET", rest.model_path(label="no-such-label"))
    assert status == 200 and json.loads(text)["model_version_status"][0]["version"] == "1"
    # Deeply nested JSON: a 400, not a dropped connection.
    depth = 20000
    nested = b'{"signature_name": "predict_x", "instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
    status, text = rest.raw("POST", rest.model_path() + ":predict", nested)
    assert status == 400 and "JSON Parse error" in json.loads(text)["error"]
    _still_serving(rest, rpc)
    # A chunked upload is read like any other body.
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        chunks = [b'{"signature_name": "predict_x",', b' "instances": [1.0, 2.5]}']
        connection.request("POST", rest.model_path() + ":predict", body=iter(chunks),
                           headers={"Content-Type": "application/json"}, encode_chunked=True)
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"predictions": [2.0, 5.0]})
    finally:
        connection.close()


def test_grpc_refuses_wrong_dtypes_and_malformed_tensors(tiny_server):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    from serving.client import ServingClientError

    server, rest, rpc = tiny_server
    for array, name in ((np.array([1.5], np.float64), "double"), (np.array([1], np.int32), "int32")):
        with pytest.raises(ServingClientError) as error:
            rpc.predict_tensors({"x": array}, signature_name="predict_x")
        assert error.value.code == "INVALID_ARGUMENT"
        assert f"Expects arg[0] to be float but {name} is provided" in error.value.message
    malformed = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_content=b"\0\0\0\0",
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=3)]))
    with pytest.raises(ServingClientError) as error:
        rpc.predict_tensors({"x": malformed}, signature_name="predict_x")
    assert error.value.code == "INVALID_ARGUMENT" and "not a valid TensorProto" in error.value.message
    _still_serving(rest, rpc)


def test_clients_convert_pandas_rows_with_blanks_by_the_schema_types():
    """Issue 14, case 3: float64 columns (blanks) become int64 for INT features; blanks are left out."""
    import pandas as pd

    from models import features
    from serving import payloads

    frame = pd.DataFrame({"island": ["Biscoe", "Dream"], "bill_length_mm": [45, None],
                          "flipper_length_mm": [192, None], "body_mass_g": [5000, 3650],
                          "sex": ["female", None]})
    assert frame["flipper_length_mm"].dtype == np.float64  # the blank made the int column float
    rows = frame.to_dict("records")
    typed = [payloads.typed_row(row, i) for i, row in enumerate(rows)]
    assert typed[0] == {"island": "Biscoe", "bill_length_mm": 45.0, "flipper_length_mm": 192,
                        "body_mass_g": 5000, "sex": "female"}
    assert type(typed[0]["flipper_length_mm"]) is int and type(typed[0]["bill_length_mm"]) is float
    assert typed[1] == {"island": "Dream", "body_mass_g": 3650}
    example = payloads.example_from_row(rows[0])
    for key in features.INT_FEATURE_KEYS:
        assert list(example.features.feature[key].int64_list.value) == [int(rows[0][key])]
    assert list(example.features.feature["bill_length_mm"].float_list.value) == [45.0]
    with pytest.raises(ValueError, match="row 3: flipper_length_mm must be a whole number"):
        payloads.typed_row({"flipper_length_mm": 192.5}, 3)

    # serving_raw's columns: each of the schema's type, a blank as that type's missing marker.
    columns = payloads.raw_columns(rows)
    assert columns["flipper_length_mm"].dtype == np.int64 and columns["bill_length_mm"].dtype == np.float32
    assert columns["flipper_length_mm"].tolist() == [192, features.MISSING_INT]
    assert np.isnan(columns["bill_length_mm"][1]) and columns["sex"].tolist() == ["female", ""]
    assert payloads.rows_from_raw_columns(columns)[1]["flipper_length_mm"] is None
    from serving.batch import parse_csv_line

    assert parse_csv_line("Biscoe,45.1,,5000", ["island", "bill_length_mm", "flipper_length_mm",
                                                  "body_mass_g"]) == {
        "island": "Biscoe", "bill_length_mm": 45.1, "body_mass_g": 5000}

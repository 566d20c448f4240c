"""Serving end to end, on the model the default pipeline pushed (`pushed_pipeline`).

The local server runs in this process on free loopback ports; the clients talk
to it over real sockets. The pushed serving directory is copied first, so that
adding versions here does not disturb other tests that share the pushed run.
"""

import base64
import dataclasses
import json
import math
import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest

from serving import payloads, versions
from serving.client import GrpcClient, RestClient, ServingClientError
from serving.server import LocalServer
from serving.server_files import CANARY, PREVIOUS, STABLE, serving_paths
from serving.versions import write_serving_files
from serving.warmup import read_blessing, read_examples, read_warmup

pytestmark = pytest.mark.e2e

ROW = {"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5,
       "flipper_length_mm": 215, "body_mass_g": 5000, "sex": "female"}
MAX_REQUEST_BYTES = 64 * 1024
WAIT_SECONDS = 180


def _pushed_version_dir(run):
    base = run.config.serving_model_dir
    return os.path.join(base, str(versions.ready_versions(base)[-1]))


def _eval_examples(run, limit=5):
    root = os.path.join(run.config.pipeline_root, "CsvExampleGen", "examples")
    execution = sorted(os.listdir(root))[-1]
    return list(read_examples(os.path.join(root, execution, "Split-eval"), limit))


@pytest.fixture(scope="module")
def served(pushed_pipeline, tmp_path_factory):
    """A LocalServer over a copy of the pushed versions, with a models.config labelling stable."""
    output_dir = str(tmp_path_factory.mktemp("served") / "outputs")
    config = dataclasses.replace(
        pushed_pipeline.config, output_dir=output_dir,
        serving=dataclasses.replace(pushed_pipeline.config.serving, poll_seconds=0.2,
                                    max_request_bytes=MAX_REQUEST_BYTES, rest_port=0, grpc_port=0))
    shutil.copytree(pushed_pipeline.config.serving_model_dir, config.serving_model_dir)
    write_serving_files(config)
    server = LocalServer.from_config(config).start()
    rest = RestClient(config.pipeline_name, port=server.rest_port)
    rpc = GrpcClient(config.pipeline_name, port=server.grpc_port)
    try:
        yield config, server, rest, rpc
    finally:
        rpc.close()
        rest.close()
        server.stop()


def test_pushed_version_has_parseable_warmup_requests_and_a_blessing(pushed_pipeline):
    version_dir = _pushed_version_dir(pushed_pipeline)
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    logs = read_warmup(version_dir)
    kinds = {(log.WhichOneof("log_type"), (log.predict_log.request.model_spec.signature_name
                                           or log.classify_log.request.model_spec.signature_name))
             for log in logs}
    assert kinds == {("predict_log", "serving_raw"), ("predict_log", "serving_default"),
                     ("classify_log", "serving_default")}
    classify = next(log for log in logs if log.WhichOneof("log_type") == "classify_log")
    example = classify.classify_log.request.input.example_list.examples[0]
    # Built from real examples: the features are there, the label is not.
    assert {"island", "bill_length_mm"} <= set(example.features.feature)
    assert "species" not in example.features.feature
    assert read_blessing(version_dir)["blessed"] is True


def test_rest_and_grpc_clients_agree(served, pushed_pipeline):
    config, server, rest, rpc = served
    stable = versions.current_labels(serving_paths(config))[STABLE]
    rows = [ROW, {"island": "Dream", "bill_length_mm": None, "sex": ""}]
    by_rest = rest.predict(rows, label=STABLE)
    by_grpc = rpc.predict(rows, label=STABLE)
    assert by_grpc.version == stable
    assert [r["predicted_class"] for r in by_rest.rows] == [r["predicted_class"] for r in by_grpc.rows]
    for a, b in zip(by_rest.rows, by_grpc.rows, strict=True):
        assert np.allclose(a["scores"], b["scores"], atol=1e-6)
        assert math.isclose(sum(a["scores"]), 1.0, rel_tol=1e-4)
        assert a["predicted_class"] == a["classes"][a["class_ids"]]
    assert rpc.predict([ROW], version=stable).rows == by_grpc.rows[:1]

    examples = _eval_examples(pushed_pipeline)
    rest_classes = rest.classify(examples, version=stable)
    grpc_classes = rpc.classify(examples)
    assert len(rest_classes) == len(examples)
    for a, b in zip(rest_classes, grpc_classes, strict=True):
        assert [label for label, _ in a] == [label for label, _ in b]
        assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-6)
    assert rpc.classify([ROW])[0]  # raw rows are converted to tf.Examples

    # Issue 14, case 3: a pandas row of this data (an INT column with a blank is float64)
    # classifies through both clients, which convert by the schema's types.
    import pandas as pd

    frame = pd.DataFrame([ROW, {**ROW, "flipper_length_mm": None, "bill_length_mm": 45}])
    assert frame["flipper_length_mm"].dtype == np.float64
    pandas_rows = frame.to_dict("records")
    by_rest, by_grpc = rest.classify(pandas_rows), rpc.classify(pandas_rows)
    assert [max(r, key=lambda c: c[1])[0] for r in by_rest] == [max(r, key=lambda c: c[1])[0]
                                                                 for r in by_grpc]
    assert np.allclose([s for _, s in by_rest[0]], [s for _, s in rpc.classify([ROW])[0]], atol=1e-6)

    assert rest.status()["model_version_status"] == [{
        "version": str(stable), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    assert rpc.status(label=STABLE)["model_version_status"][0]["version"] == str(stable)
    rest_signatures = rest.metadata()["metadata"]["signature_def"]["signature_def"]
    assert set(rest_signatures) == set(rpc.metadata()["signature_def"]) == {
        "serving_default", "serving_raw", "transform_features"}
    assert set(rest_signatures["serving_raw"]["inputs"]) == set(ROW)


def test_signatures_declare_the_schema_types_and_every_client_path_takes_pandas_rows(served):
    """Issue 14, case 3: serving_raw declared INT features DT_FLOAT while the schema (and so
    serving_default's parser) types them int64, so a client typing its values from
    GetModelMetadata failed on :classify. Now every signature declares the schema's types,
    and a pandas row with blanks (float64 columns) gives the same scores on every path."""
    import pandas as pd
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from serving.batch import RawRowModelHandler

    config, server, rest, rpc = served
    schema = text_format.Parse(open(config.schema_path).read(), schema_pb2.Schema())
    schema_dtype = {f.name: {schema_pb2.INT: "DT_INT64", schema_pb2.FLOAT: "DT_FLOAT",
                             schema_pb2.BYTES: "DT_STRING"}[f.type] for f in schema.feature}
    declared = {k: v["dtype"] for k, v in rpc.metadata()["signature_def"]["serving_raw"]["inputs"].items()}
    assert declared == {k: schema_dtype[k] for k in ROW}

    # A careful client: each value typed as the metadata says (DT_INT64 -> int, DT_FLOAT -> float).
    python_type = {"DT_INT64": int, "DT_FLOAT": float, "DT_STRING": str}
    row = {k: python_type[declared[k]](v) for k, v in ROW.items()}
    predicted = rest.call("POST", rest.model_path() + ":predict",
                          {"signature_name": "serving_raw", "instances": [row]})["predictions"][0]
    (classified,) = rest.call("POST", rest.model_path() + ":classify", {"examples": [row]})["results"]
    assert np.allclose(predicted["scores"], [score for _, score in classified], atol=1e-6)

    frame = pd.DataFrame([ROW, {**ROW, "flipper_length_mm": None, "bill_length_mm": None, "sex": None},
                          {**ROW, "body_mass_g": None, "island": "Dream"}])
    assert frame["flipper_length_mm"].dtype == frame["body_mass_g"].dtype == np.float64
    rows = frame.to_dict("records")
    # The tf.Example path leaves a blank out; serving_raw's markers must mean the same.
    expected = [[score for _, score in result] for result in rpc.classify(rows)]
    handler = RawRowModelHandler(os.path.join(config.serving_model_dir, str(rpc.predict([ROW]).version)))
    batch = [result.inference for result in handler.run_inference(rows, handler.load_model())]
    paths = {
        "REST predict": [r["scores"] for r in rest.predict(rows).rows],
        "gRPC predict": [r["scores"] for r in rpc.predict(rows).rows],
        "REST classify": [[score for _, score in result] for result in rest.classify(rows)],
        "batch": [r["scores"] for r in batch],
    }
    # Compared in log space: the model is confident, so a blank moves the small scores only.
    for name, scores in paths.items():
        assert np.allclose(np.log(scores), np.log(expected), atol=1e-3), name
    assert not np.allclose(np.log(expected[0]), np.log(expected[1]), atol=1e-1)  # the blanks count


def test_rest_payload_formats_match_tf_serving(served, pushed_pipeline):
    config, server, rest, rpc = served
    rows = [ROW, dict(ROW, island="Torgersen", bill_length_mm=float("nan"))]
    columns = {k: [row[k] for row in rows] for k in ROW}
    row_format = rest.call("POST", rest.model_path() + ":predict",
                           {"signature_name": "serving_raw", "instances": rows})
    columnar = rest.call("POST", rest.model_path() + ":predict",
                         {"signature_name": "serving_raw", "inputs": columns})
    assert set(row_format) == {"predictions"} and set(columnar) == {"outputs"}
    assert [p["predicted_class"] for p in row_format["predictions"]] == columnar["outputs"]["predicted_class"]
    assert np.allclose([p["scores"] for p in row_format["predictions"]], columnar["outputs"]["scores"])

    # serving_default takes serialized tf.Examples as {"b64": ...}, one input, so the
    # predictions are per-row objects with both outputs.
    encoded = [{"b64": base64.b64encode(e.SerializeToString()).decode()}
               for e in _eval_examples(pushed_pipeline, 2)]
    by_examples = rest.call("POST", rest.model_path() + ":predict", {"instances": encoded})
    assert set(by_examples["predictions"][0]) == {"classes", "scores"}
    classify = rest.call("POST", rest.model_path() + ":classify",
                         {"context": {"island": "Biscoe"}, "examples": [
                             {k: v for k, v in ROW.items() if k != "island"}]})
    (result,) = classify["results"]
    assert sorted(label for label, _ in result) == ["Adelie", "Chinstrap", "Gentoo"]
    assert math.isclose(sum(score for _, score in result), 1.0, rel_tol=1e-4)


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "JSON Parse error"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b'{"signature_name": "serving_raw"}', 400, "Missing 'inputs' or 'instances' key"),
    (json.dumps({"signature_name": "serving_raw", "instances": [dict(ROW, color="red")]}).encode(),
     400, "Sent extra: {color}"),
    (json.dumps({"signature_name": "serving_raw", "instances": [
        {k: v for k, v in ROW.items() if k != "sex"}]}).encode(), 400, "Missing but required: {sex}"),
    (json.dumps({"signature_name": "serving_raw", "instances": [dict(ROW, island=3)]}).encode(),
     400, "is not of expected type: string"),
    (json.dumps({"signature_name": "serving_raw", "instances": [dict(ROW, body_mass_g="heavy")]}).encode(),
     400, "is not of expected type: int64"),
    (json.dumps({"signature_name": "serving_raw", "instances": [dict(ROW, body_mass_g=5000.0)]}).encode(),
     400, "is not of expected type: int64"),
    (json.dumps({"signature_name": "nope", "instances": [ROW]}).encode(), 400,
     'Serving signature key "nope" not found.'),
])
def test_rest_errors_are_tf_serving_style_and_the_server_keeps_serving(served, body, status, message):
    config, server, rest, rpc = served
    got_status, text = rest.raw("POST", rest.model_path() + ":predict", body)
    assert got_status == status
    assert message in json.loads(text)["error"]
    assert rest.predict([ROW]).rows[0]["predicted_class"]


def test_unknown_model_version_label_path_and_big_bodies(served):
    config, server, rest, rpc = served
    cases = [
        ("POST", "/v1/models/unknown:predict", 404, "Servable not found for request: Latest(unknown)"),
        ("POST", rest.model_path(version=1) + ":predict", 404, "Specific(penguin, 1)"),
        ("POST", rest.model_path(label="blue") + ":predict", 400, "Unrecognized servable version label"),
        ("GET", rest.model_path(version=1), 404, "Could not find version 1"),
        ("GET", "/v1/models/penguin:predict", 400, "Malformed request"),
        ("POST", "/v2/anything", 404, "Not found"),
    ]
    for method, path, status, message in cases:
        got_status, text = rest.raw(method, path, b'{"instances": [1]}' if method == "POST" else None)
        assert (got_status, message in json.loads(text)["error"]) == (status, True), (path, text)
    status, text = rest.raw("POST", rest.model_path() + ":predict", b" " * (MAX_REQUEST_BYTES + 1))
    assert status == 413 and "exceeds the limit" in json.loads(text)["error"]

    for call, code in [
        (lambda: GrpcClient("unknown", port=server.grpc_port).predict([ROW]), "NOT_FOUND"),
        (lambda: rpc.predict([ROW], version=1), "NOT_FOUND"),
        (lambda: rpc.predict([ROW], label="blue"), "INVALID_ARGUMENT"),
        (lambda: rpc.predict_tensors({"island": np.array([b"Biscoe"])}, signature_name="serving_raw"),
         "INVALID_ARGUMENT"),
        (lambda: rpc.predict_tensors({"examples": np.array([b"x" * (MAX_REQUEST_BYTES + 1)])}),
         "RESOURCE_EXHAUSTED"),
        (lambda: rpc.predict_tensors({"examples": np.array([b"not an example"])}), "INVALID_ARGUMENT"),
    ]:
        with pytest.raises(ServingClientError) as error:
            call()
        assert error.value.code == code
    assert rest.predict([ROW]).rows and rpc.predict([ROW]).rows  # still serving


def test_request_log_holds_raw_rows_for_skew_detection(served):
    config, server, rest, rpc = served
    # A body mass no other test sends marks this test's two rows; lines are written
    # in batches, up to 0.1 s after their request, so wait for both.
    rest.predict([dict(ROW, island="Dream", body_mass_g=4321)])
    rpc.predict([dict(ROW, island="Torgersen", body_mass_g=4321)])
    deadline = time.time() + WAIT_SECONDS
    entries, ours = [], []
    while time.time() < deadline and len(ours) < 2:
        time.sleep(0.1)
        with open(serving_paths(config).request_log) as f:
            entries = [json.loads(line) for line in f]
        ours = [e for e in entries if e["status"] == "OK" and e["method"] == "predict"
                and e["rows"][0]["body_mass_g"] == 4321]
    assert [(e["api"], e["rows"][0]["island"]) for e in ours] == [("rest", "Dream"), ("grpc", "Torgersen")]
    dream = ours[0]
    assert dream["rows"][0]["bill_length_mm"] == pytest.approx(45.1)
    assert dream["outputs"][0]["predicted_class"] in ("Adelie", "Chinstrap", "Gentoo")
    assert ours[1]["version"]
    assert any(e["status"] == "INVALID_ARGUMENT" for e in entries)  # errors are logged too


def test_reload_config_over_grpc_refuses_a_broken_version_and_the_file_wins_later(served):
    from tensorflow_serving.apis import model_management_pb2

    from serving.server_files import model_server_config, write_models_config

    config, server, rest, rpc = served
    paths = serving_paths(config)
    stable = versions.current_labels(paths)[STABLE]

    def reload(labels):
        request = model_management_pb2.ReloadConfigRequest(config=model_server_config(
            config.pipeline_name, paths.serving_model_dir, labels))
        return rpc.models.HandleReloadConfigRequest(request, timeout=WAIT_SECONDS).status

    assert reload({STABLE: stable, "blue": stable}).error_code == 0
    assert rpc.predict([ROW], label="blue").version == stable
    broken = os.path.join(paths.serving_model_dir, str(stable + 5))
    os.makedirs(broken)
    try:
        with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
            f.write(b"not a SavedModel")
        status = reload({STABLE: stable, CANARY: stable + 5})
        assert status.error_code != 0 and f"[{stable + 5}] failed to load" in status.error_message
        assert rpc.predict([ROW], label="blue").version == stable  # the previous state still serves
    finally:
        shutil.rmtree(broken)
    write_models_config(paths.models_config, model_server_config(
        config.pipeline_name, paths.serving_model_dir, {STABLE: stable}))

    def blue_is_gone():
        try:
            rpc.predict([ROW], label="blue")
            return False
        except ServingClientError as e:
            return e.code == "INVALID_ARGUMENT"

    _wait_for(blue_is_gone, "models.config on disk to replace the reloaded config")


def _wait_for(condition, what):
    deadline = time.time() + WAIT_SECONDS
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_burst_while_a_new_version_is_pushed_canaried_promoted_and_rolled_back(served):
    config, server, rest, rpc = served
    paths = serving_paths(config)
    old = versions.current_labels(paths)[STABLE]
    new = old + 1
    # "Push" a new version: copy under a temporary name, then one rename, as a
    # pusher writing saved_model.pb last looks to a poller. The copy keeps the
    # blessing record, so it may be labelled.
    staging = os.path.join(paths.serving_model_dir, f".staging-{new}")
    shutil.copytree(os.path.join(paths.serving_model_dir, str(old)), staging)

    stop = threading.Event()
    failures, seen, latencies = [], [], []  # latencies: (finished at, seconds) of stable requests
    lock = threading.Lock()
    # Bounded: paced requests until the rollback is done, at most this many per worker.
    max_requests_per_worker = 3000

    def worker(index):
        rest_client = RestClient(config.pipeline_name, port=server.rest_port)
        grpc_client = GrpcClient(config.pipeline_name, port=server.grpc_port)
        for i in range(max_requests_per_worker):
            if stop.is_set():
                break
            started = time.perf_counter()
            try:
                if (index + i) % 3 == 0:
                    rest_client.predict([ROW], label=STABLE)
                else:
                    result = grpc_client.predict([ROW], label=STABLE if i % 2 else None)
                    with lock:
                        seen.append(result.version)
                with lock:
                    latencies.append((time.perf_counter(), time.perf_counter() - started))
            except Exception as e:  # noqa: BLE001 - every failure is recorded and asserted on
                with lock:
                    failures.append(repr(e))
            time.sleep(0.02)
        grpc_client.close()
        rest_client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    try:
        os.rename(staging, os.path.join(paths.serving_model_dir, str(new)))
        versions.set_canary(paths, new)
        _wait_for(lambda: server.store.labels(config.pipeline_name).get(CANARY) == new, "the canary")
        assert rpc.predict([ROW], label=CANARY).version == new
        versions.promote(paths)
        _wait_for(lambda: rpc.predict([ROW], label=STABLE).version == new, "the promotion")
        # The old stable stays loaded as `previous`: the same servable object, not reloaded.
        assert sorted(row[0] for row in server.store.status(config.pipeline_name)) == [old, new]
        old_servable = server.store.resolve(config.pipeline_name, label=PREVIOUS)
        assert old_servable.version == old
        time.sleep(1.0)  # keep the burst going on the promoted version
        rollback_at = time.perf_counter()
        assert versions.rollback(paths) == {STABLE: old}
        _wait_for(lambda: rpc.predict([ROW], label=STABLE).version == old, "the rollback")
        time.sleep(1.0)  # and on the rolled-back version
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures[:5]
    assert set(seen) <= {old, new} and new in seen and len(seen) > 20
    # Issue 14, case 8: the rollback is a label move between loaded versions, so nothing
    # reloads while it takes traffic: the servable answering stable is the one kept loaded.
    assert server.store.resolve(config.pipeline_name, label=STABLE) is old_servable
    during = [seconds for finished, seconds in latencies if finished >= rollback_at]
    before = [seconds for finished, seconds in latencies if finished < rollback_at]
    print(f"stable requests before the rollback: p50 {np.median(before) * 1000:.1f} ms, p99 "
          f"{np.percentile(before, 99) * 1000:.1f} ms, max {max(before) * 1000:.1f} ms ({len(before)}); "
          f"after it: p50 {np.median(during) * 1000:.1f} ms, p99 {np.percentile(during, 99) * 1000:.1f} ms, "
          f"max {max(during) * 1000:.1f} ms ({len(during)}); load average {os.getloadavg()[0]:.1f}")
    with pytest.raises(ServingClientError) as error:
        rpc.predict([ROW], label=CANARY)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT.name


def test_without_labels_the_newest_push_is_served_without_a_restart(pushed_pipeline, tmp_path):
    from serving.model_store import ModelStore

    base = str(tmp_path / "penguin")
    shutil.copytree(pushed_pipeline.config.serving_model_dir, base)
    old = versions.ready_versions(base)[-1]
    store = ModelStore(model_name="penguin", base_path=base, poll_seconds=0.2, warmup=False)
    store.start()
    try:
        assert store.resolve("penguin").version == old
        shutil.copytree(os.path.join(base, str(old)), os.path.join(base, f".staging-{old + 1}"))
        os.rename(os.path.join(base, f".staging-{old + 1}"), os.path.join(base, str(old + 1)))
        _wait_for(lambda: store.resolve("penguin").version == old + 1, "the new version")
        assert [row[0] for row in store.status("penguin")] == [old + 1]  # latest 1: the old one unloaded
    finally:
        store.stop()


def test_batch_predictions_on_direct_runner(served, tmp_path):
    from pipeline.orchestration import beam_pipeline_args
    from serving.batch import run_batch_predictions

    config, server, rest, rpc = served
    source = os.path.join(config.data_root, "span-2008")
    csv_file = os.path.join(source, sorted(os.listdir(source))[0])
    with open(csv_file) as f:
        lines = f.read().splitlines()[:13]
    input_csv = tmp_path / "new" / "penguins.csv"
    input_csv.parent.mkdir()
    input_csv.write_text("\n".join(lines) + "\n")
    version_dir = os.path.join(config.serving_model_dir, str(versions.stable_version(serving_paths(config))))
    files = run_batch_predictions(version_dir, str(input_csv), beam_args=beam_pipeline_args(config))
    assert files and all(f.startswith(str(tmp_path / "new" / "predictions")) for f in files)
    records = [json.loads(line) for path in files for line in open(path)]
    assert len(records) == len(lines) - 1
    first = next(r for r in records if r["input"].get("bill_length_mm") is not None)
    online = rest.predict([first["input"]]).rows[0]
    assert first["prediction"]["predicted_class"] == online["predicted_class"]
    assert np.allclose(first["prediction"]["scores"], online["scores"], atol=1e-5)


def test_tfxt_serving_serve_answers_curl_style_and_cli_predict(pushed_pipeline, tmp_path):
    """The README path: `tfxt serving serve` in a process, then REST and `tfxt serving predict --grpc`."""
    import signal
    import subprocess
    import sys

    from click.testing import CliRunner

    from runners.cli.main import main

    output_dir = tmp_path / "outputs"
    shutil.copytree(pushed_pipeline.config.serving_model_dir,
                    output_dir / "serving_model" / pushed_pipeline.config.pipeline_name)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps({
        "output_dir": str(output_dir), "data_root": pushed_pipeline.config.data_root,
        "schema_path": pushed_pipeline.config.schema_path,
        "serving": {"rest_port": 0, "grpc_port": 0}}))
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "tfxt"), "serving", "serve",
         "--config", str(config_file)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ports = {}
        deadline = time.time() + WAIT_SECONDS
        while time.time() < deadline and "grpc" not in ports:
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("REST on "):
                ports["rest"] = int(line.split("http://127.0.0.1:")[1].split("/")[0])
                ports["grpc"] = int(line.rsplit("127.0.0.1:", 1)[1].split(".")[0])
        assert "grpc" in ports, "the server did not start"
        rest = RestClient(pushed_pipeline.config.pipeline_name, port=ports["rest"])
        status, text = rest.raw("POST", "/v1/models/penguin/labels/stable:predict", json.dumps(
            {"signature_name": "serving_raw", "instances": [ROW]}).encode())
        assert status == 200 and json.loads(text)["predictions"][0]["predicted_class"]
        result = CliRunner().invoke(main, ["serving", "predict", json.dumps([ROW]), "--grpc",
                                           "--port", str(ports["grpc"]), "--label", "stable",
                                           "--config", str(config_file)])
        assert result.exit_code == 0, result.output
        answer = json.loads(result.output)
        assert answer["version"] == versions.ready_versions(
            str(output_dir / "serving_model" / "penguin"))[-1]
        assert answer["predictions"][0]["predicted_class"] == json.loads(text)["predictions"][0][
            "predicted_class"]
    finally:
        # SIGTERM, as Kubernetes and systemd stop it; Ctrl-C takes the same path.
        process.send_signal(signal.SIGTERM)
        try:
            remaining_output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            remaining_output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, f"the server did not stop cleanly on SIGTERM: {process.returncode}"
    assert "Stopped." in remaining_output
    assert (output_dir / "serving_config" / "models.config").exists()


def _rows(count):
    """Distinct raw rows, so that a mixed-up split of a batch's outputs would show."""
    islands = ("Biscoe", "Dream", "Torgersen")
    return [dict(ROW, island=islands[i % 3], bill_length_mm=32.5 + 1.7 * i, body_mass_g=3000 + 150 * i,
                 sex="male" if i % 2 else "female") for i in range(count)]


def _concurrently(batcher, loaded, signature_name, requests, monkeypatch):
    """Each request through `batcher` from a thread of its own; returns results (or errors) and call sizes.

    The first model call waits until every other request is queued behind it (or,
    without batching, has run), so what merges does not depend on the machine's timing.
    """
    from serving import inference
    from serving.errors import ServingError

    sizes, release, original = [], threading.Event(), inference.LoadedVersion.call

    def call(function, tensors, wanted):
        sizes.append(int(next(iter(tensors.values())).shape[0]))
        if len(sizes) == 1:
            assert release.wait(WAIT_SECONDS)
        return original(function, tensors, wanted)

    monkeypatch.setattr(inference.LoadedVersion, "call", staticmethod(call))
    results = [None] * len(requests)

    def run(index):
        try:
            results[index] = batcher.predict(loaded, signature_name, requests[index])
        except ServingError as e:
            results[index] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    threads[0].start()
    deadline = time.time() + WAIT_SECONDS
    while not sizes and time.time() < deadline:
        time.sleep(0.01)
    for thread in threads[1:]:
        thread.start()
    while time.time() < deadline and len(sizes) < len(requests) and sum(
            len(lane.waiting) for lane in list(batcher._lanes.values())) < len(requests) - 1:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    return results, sizes


def test_batched_predictions_equal_unbatched_ones_bit_for_bit(served, monkeypatch):
    """Issue 14: requests that wait while a call runs are merged into one call and split back by rows."""
    from serving.batching import Batcher

    config, server, _, _ = served
    loaded = server.store.resolve(config.pipeline_name)
    requests = [payloads.raw_columns(_rows(3)[:1 + i % 3]) for i in range(7)]  # 1, 2 or 3 rows each
    alone = [loaded.predict("serving_raw", r) for r in requests]
    results, sizes = _concurrently(Batcher(max_batch_size=32), loaded, "serving_raw", requests, monkeypatch)
    assert sizes == [1, sum(len(r["island"]) for r in requests[1:])]  # the six waiting ones: one call
    for result, expected in zip(results, alone, strict=True):
        assert set(result) == set(expected)
        for name in expected:
            assert result[name].dtype == expected[name].dtype
            assert np.array_equal(result[name], expected[name])  # bit for bit, row order kept


def test_a_request_the_model_refuses_fails_alone_and_batching_off_merges_nothing(served, monkeypatch):
    """One bad row in a merged call: its request gets INVALID_ARGUMENT, its neighbours their answers."""
    from serving.batching import Batcher
    from serving.errors import ServingError

    config, server, _, _ = served
    loaded = server.store.resolve(config.pipeline_name)
    good = [payloads.example_from_row(row).SerializeToString() for row in _rows(5)]
    requests = [{"examples": np.array([example], dtype=object)} for example in good]
    requests.insert(3, {"examples": np.array([b"not an example"], dtype=object)})
    alone = [loaded.predict("serving_default", r) for r in requests[:3] + requests[4:]]
    results, sizes = _concurrently(Batcher(), loaded, "serving_default", requests, monkeypatch)
    assert sizes[:2] == [1, 5]  # the merged call failed; then each of its requests ran alone
    assert isinstance(results[3], ServingError) and results[3].code == grpc.StatusCode.INVALID_ARGUMENT
    for result, expected in zip(results[:3] + results[4:], alone, strict=True):
        assert np.array_equal(result["scores"], expected["scores"])
    # Switched off (serving.enable_batching: false), every request is its own call.
    results, sizes = _concurrently(Batcher(enabled=False), loaded, "serving_default", requests, monkeypatch)
    assert sizes == [1] * len(requests)
    assert isinstance(results[3], ServingError) and not any(
        isinstance(r, ServingError) for r in results[:3] + results[4:])


def test_concurrent_rest_and_grpc_requests_with_malformed_ones_through_the_server(served):
    """Every good request gets its own rows, whatever merged; the malformed ones get 400/INVALID_ARGUMENT."""
    config, server, rest, rpc = served
    assert server.batcher.enabled and server.batcher.max_batch_size == config.serving.max_batch_size
    rows = _rows(12)
    expected = [rest.predict([row]).rows for row in rows]
    outcomes = [None] * (len(rows) + 2)

    def send(index):
        try:
            if index == len(rows):  # float64 for a float32 input: TF Serving refuses it
                columns = dict(payloads.raw_columns([rows[0]]), bill_length_mm=np.array([1.0]))
                rpc.predict_tensors(columns, signature_name="serving_raw")
            elif index == len(rows) + 1:
                instance = dict(payloads.json_rows(payloads.raw_columns([rows[0]]))[0], bill_length_mm="long")
                rest.call("POST", rest.model_path() + ":predict",
                          {"signature_name": "serving_raw", "instances": [instance]})
            else:
                outcomes[index] = (rest if index % 2 else rpc).predict([rows[index]]).rows
                return
        except ServingClientError as e:
            outcomes[index] = e.code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(outcomes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert outcomes[:len(rows)] == expected
    assert outcomes[len(rows):] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert rpc.predict([ROW]).rows == rest.predict([ROW]).rows  # still serving

"""Custom executors and artifact readers on a non-local filesystem (`ram://`, standing in for gs://).

Each test runs from an empty working directory and checks, besides the result,
that no local folder named "ram:" appeared there: that is what `os.makedirs`,
`open` or `shutil` make of a "ram://..." URI, and what they made of gs:// URIs
on Vertex before artifact access went through `tfx.dsl.io.fileio`.
"""

import os

import pytest


@pytest.fixture
def remote(ram_filesystem, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    yield f"{ram_filesystem}{request.node.name}"
    assert not os.path.exists(tmp_path / "ram:"), "a remote URI was written as a local path"


def _write(path, data: bytes):
    from tfx.dsl.io import fileio

    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "wb") as f:
        f.write(data)


def test_the_anomalies_gate_reads_anomalies_from_a_remote_artifact(remote):
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from pipeline.components.anomalies_gate import read_anomalies

    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["island"]
    info.reason.add(description="Examples contain values missing from the schema: Atlantis.")
    _write(f"{remote}/anomalies/Split-eval/SchemaDiff.pb", anomalies.SerializeToString())
    _write(f"{remote}/anomalies/Split-train/SchemaDiff.pb", anomalies_pb2.Anomalies().SerializeToString())

    found = read_anomalies(f"{remote}/anomalies")
    assert [(a.split, a.column) for a in found] == [("eval", "island")]
    assert "Atlantis" in found[0].description


def test_the_pusher_recognises_a_model_already_served_on_a_remote_serving_dir(remote):
    from pipeline.components.pusher import find_serving_version, model_fingerprint

    model = {"saved_model.pb": b"graph", "variables/variables.index": b"index",
             "variables/variables.data-00000-of-00001": b"weights"}
    for name, data in model.items():
        _write(f"{remote}/model/{name}", data)
        _write(f"{remote}/serving/100/{name}", data)
        _write(f"{remote}/serving/200/{name}", data.replace(b"weights", b"other weights"))

    assert model_fingerprint(f"{remote}/model") is not None
    assert find_serving_version(f"{remote}/serving", f"{remote}/model") == "100"
    assert find_serving_version(f"{remote}/absent", f"{remote}/model") is None


def test_edge_export_of_an_unblessed_model_records_it_on_the_remote_artifact(remote):
    from tfx.dsl.io import fileio

    from edge.parity import read_blessing
    from pipeline.components.edge_export import export_if_blessed

    output = f"{remote}/edge_model/7"
    export_if_blessed(model_blessed=False, serving_model_dir=f"{remote}/none", transform_graph_dir="",
                      train_dir="", eval_dir="", output_dir=output, max_accuracy_drop=0.01,
                      representative_examples=10)
    assert sorted(fileio.listdir(output)) == ["NOT_EDGE_BLESSED", "edge_blessing.json"]
    assert read_blessing(output)["blessed"] is False


def test_the_summary_reads_class_names_from_a_remote_transform_graph(remote):
    from models import features
    from pipeline.ops.summary import read_class_names

    _write(f"{remote}/transform_graph/transform_fn/assets/{features.LABEL_VOCABULARY}",
           b"Adelie\nGentoo\nChinstrap\n")
    assert read_class_names(f"{remote}/transform_graph") == ["Adelie", "Gentoo", "Chinstrap"]


def test_edge_export_publishes_its_local_folder_to_the_remote_artifact(remote, tmp_path):
    from tfx.dsl.io import fileio

    from edge.export import publish

    local = tmp_path / "work"
    (local / "rejected").mkdir(parents=True)
    (local / "edge_blessing.json").write_text("{}")
    (local / "rejected" / "model_int8.tflite").write_bytes(b"int8")
    publish(str(local), f"{remote}/edge_model")
    assert sorted(fileio.listdir(f"{remote}/edge_model")) == ["edge_blessing.json", "rejected"]
    with fileio.open(f"{remote}/edge_model/rejected/model_int8.tflite", "rb") as f:
        assert f.read() == b"int8"

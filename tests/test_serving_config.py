"""Serving configuration and version labels, on fake version directories (no model, no TF).

models.config generation and parsing, the batching and monitoring files,
atomic writes, and canary / promote / rollback through the functions and the
`tfxt serving` commands, including the refusals: a label never goes to a
missing or unblessed version.
"""

import json
import os
import time

import pytest
from click.testing import CliRunner

from pipeline.config import ConfigError, load_config
from runners.cli.main import main
from serving import server_files, versions
from serving.server_files import CANARY, PREVIOUS, STABLE, ServingPaths
from tests.conftest import DATA_ROOT, REPO_ROOT, SCHEMA_PATH


def _push(base, version, blessed=True, complete=True):
    """A fake pushed version: saved_model.pb last, as Pusher writes it, plus a blessing record."""
    directory = os.path.join(base, str(version))
    os.makedirs(os.path.join(directory, "assets.extra"), exist_ok=True)
    if blessed is not None:
        with open(os.path.join(directory, "assets.extra", "blessing.json"), "w") as f:
            json.dump({"blessed": blessed}, f)
    if complete:
        open(os.path.join(directory, "saved_model.pb"), "wb").close()


@pytest.fixture
def paths(tmp_path):
    base = str(tmp_path / "serving_model" / "penguin")
    os.makedirs(base)
    return ServingPaths("penguin", base, base, str(tmp_path / "serving_config"),
                        str(tmp_path / "requests.jsonl"))


def _config(tmp_path, **serving):
    return load_config(overrides={"data_root": DATA_ROOT, "schema_path": SCHEMA_PATH,
                                  "output_dir": str(tmp_path / "outputs"), "serving": serving},
                       base_dir=str(tmp_path))


def test_models_config_carries_policy_and_labels_and_parses_back(paths):
    config = server_files.model_server_config("penguin", paths.serving_model_dir,
                                                {STABLE: 10, CANARY: 12})
    server_files.write_models_config(paths.models_config, config)
    parsed = server_files.read_models_config(paths.models_config)
    model = parsed.model_config_list.config[0]
    assert model.name == "penguin" and model.base_path == paths.serving_model_dir
    assert model.model_platform == "tensorflow"
    assert list(model.model_version_policy.specific.versions) == [10, 12]
    assert dict(model.version_labels) == {STABLE: 10, CANARY: 12}
    unlabelled = server_files.model_server_config("penguin", "/models/penguin", None, num_versions=2)
    assert unlabelled.model_config_list.config[0].model_version_policy.latest.num_versions == 2
    assert os.listdir(paths.config_dir) == ["models.config"]  # no temporary file left behind


def test_a_broken_models_config_is_reported_by_name(paths):
    os.makedirs(paths.config_dir)
    with open(paths.models_config, "w") as f:
        f.write("model_config_list { config { nme: 'x' } }")
    with pytest.raises(ValueError, match="models.config is not a valid ModelServerConfig"):
        server_files.read_models_config(paths.models_config)


def test_serving_files_from_config(tmp_path):
    config = _config(tmp_path, max_batch_size=8, model_base_path="/models/penguin")
    base = config.serving_model_dir
    _push(base, 100)
    _push(base, 200)
    _push(base, 300, blessed=False)
    files = versions.write_serving_files(config)
    model = server_files.read_models_config(files["models.config"]).model_config_list.config[0]
    assert model.base_path == "/models/penguin"
    assert dict(model.version_labels) == {STABLE: 200}  # the newest *blessed* version
    batching = open(files["batching_parameters.txt"]).read()
    assert "max_batch_size { value: 8 }" in batching and "batch_timeout_micros { value: 2000 }" in batching
    monitoring = open(files["monitoring.config"]).read()
    assert "enable: true" in monitoring and server_files.PROMETHEUS_PATH in monitoring


def test_reset_labels_refuses_a_stable_move_tf_serving_would_refuse(tmp_path):
    config = _config(tmp_path)
    base = config.serving_model_dir
    _push(base, 1)
    versions.write_serving_files(config)  # stable=1, the only version loaded
    _push(base, 2)
    with pytest.raises(versions.VersionError, match="not currently available for inference"):
        versions.write_serving_files(config, keep_labels=False)  # would move stable to unloaded 2
    paths = server_files.serving_paths(config)
    assert versions.current_labels(paths) == {STABLE: 1}
    versions.set_canary(paths, 2)
    assert versions.write_serving_files(config, keep_labels=False)  # 2 is loaded now: stable may move
    assert versions.current_labels(paths) == {STABLE: 2}


def test_serving_settings_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="serving.rest_port"):
        _config(tmp_path, rest_port=70000)
    with pytest.raises(ConfigError, match="must differ"):
        _config(tmp_path, rest_port=9000, grpc_port=9000)
    with pytest.raises(ConfigError, match="serving.max_request_bytes"):
        _config(tmp_path, max_request_bytes=0)


def test_canary_promote_rollback(paths):
    for version in (1, 2, 3):
        _push(paths.serving_model_dir, version)
    versions._write(paths, {STABLE: 2})
    assert versions.set_canary(paths, 3) == {STABLE: 2, CANARY: 3}
    assert versions.current_labels(paths) == {STABLE: 2, CANARY: 3}
    assert [(v.version, v.labels) for v in versions.list_versions(paths)] == [
        (3, (CANARY,)), (2, (STABLE,)), (1, ())]
    # The old stable stays loaded as `previous`, so rollback is a label move.
    assert versions.promote(paths) == {STABLE: 3, PREVIOUS: 2}
    assert versions.rollback(paths) == {STABLE: 2}
    # Version 1 is not loaded: the first call loads it as `previous`, the second moves stable.
    with pytest.raises(versions.RollbackPending, match="Version 1 was not loaded"):
        versions.rollback(paths)
    assert versions.current_labels(paths) == {STABLE: 2, PREVIOUS: 1}
    assert versions.rollback(paths) == {STABLE: 1}
    with pytest.raises(versions.VersionError, match="No blessed version older than stable 1"):
        versions.rollback(paths)
    assert versions.current_labels(paths) == {STABLE: 1}


def _models_config_sequence(paths):
    """(step, models.config as written) for start-up, canary, promote and rollback."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    def written(step):
        with open(paths.models_config) as f:
            # Parsed by TF Serving's own proto: a field it does not know fails here.
            return step, text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())

    sequence = []
    versions._write(paths, {STABLE: 1})
    sequence.append(written("start-up"))
    versions.set_canary(paths, 2)
    sequence.append(written("canary"))
    versions.promote(paths)
    sequence.append(written("promote"))
    versions.rollback(paths)
    sequence.append(written("rollback"))
    return sequence


def test_generated_label_flow_passes_tf_servings_rules(paths):
    """Issue 14, case 2: the generated models.config sequence, replayed through TF Serving's rules."""
    from serving import tfs_rules

    for version in (1, 2):
        _push(paths.serving_model_dir, version)
    sequence = _models_config_sequence(paths)
    states = dict(tfs_rules.replay(sequence, {"penguin": [1, 2]}, allow_unavailable=True))
    assert states["canary"].available["penguin"] == {1, 2}
    assert states["promote"].labels["penguin"] == {STABLE: 2, PREVIOUS: 1}
    assert states["promote"].available["penguin"] == {1, 2}  # the old stable is still loaded
    assert states["rollback"].labels["penguin"] == {STABLE: 1}
    # Without TF Serving's flag, the labels of the very first config are refused.
    with pytest.raises(tfs_rules.RuleError, match="step 'start-up'.*not currently available"):
        tfs_rules.replay(sequence, {"penguin": [1, 2]}, allow_unavailable=False)


def test_the_rules_refuse_the_old_one_step_rollback():
    """The flow before issue 14 (promote unloads the old stable, rollback relabels it) breaks R5."""
    from serving import tfs_rules

    def config(labels):
        return server_files.model_server_config("penguin", "/models/penguin", labels)

    old_flow = [("start-up", config({STABLE: 1})), ("canary", config({STABLE: 1, CANARY: 2})),
                ("promote", config({STABLE: 2})), ("rollback", config({STABLE: 1}))]
    with pytest.raises(tfs_rules.RuleError, match="step 'rollback'.*version 1 of model penguin"):
        tfs_rules.replay(old_flow, {"penguin": [1, 2]})
    for bad, message in [
        (server_files.model_server_config("penguin", "models/penguin", {STABLE: 1}), "absolute path"),
        (server_files.model_server_config("penguin", "/m", {STABLE: 3}), "not present"),
    ]:
        with pytest.raises(tfs_rules.RuleError, match=message):
            tfs_rules.replay([("start-up", bad)], {"penguin": [1, 2]})


def test_docker_and_kubernetes_pass_the_label_flag():
    import yaml

    with open(os.path.join(REPO_ROOT, "serving", "k8s", "tf-serving.yaml")) as f:
        documents = list(yaml.safe_load_all(f))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allow_version_labels_for_unavailable_models=true" in args
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        readme = f.read()
    docker = readme[readme.index("docker run"):]
    docker = docker[:docker.index("```")]
    assert "--allow_version_labels_for_unavailable_models=true" in docker


def test_request_log_rotates_by_size_and_writes_strict_json(tmp_path):
    """Issue 14, case 7: no unbounded growth, no bare NaN."""
    import numpy as np

    from serving.request_log import RequestLog

    path = tmp_path / "logs" / "requests.jsonl"
    log = RequestLog(str(path), max_bytes=4096, backups=2)
    from models import features

    inputs = {"bill_length_mm": np.array([float("nan"), 45.1], np.float32),
              "body_mass_g": np.array([features.MISSING_INT, 5000], np.int64),
              "island": np.array([b"Biscoe", b""], dtype=object)}
    outputs = {"scores": np.array([[0.5, float("inf")], [0.25, 0.75]], np.float32)}
    for _ in range(60):
        log.write("rest", "predict", "penguin", 7, "serving_raw", "OK", 0.0, inputs, outputs)
    log.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["requests.jsonl", "requests.jsonl.1", "requests.jsonl.2"]
    for name in files:
        size = (path.parent / name).stat().st_size
        assert size <= 4096
        for line in (path.parent / name).read_text().splitlines():
            entry = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
            assert entry["schema_version"] == 1 and entry["version"] == 7
            assert entry["rows"][0]["bill_length_mm"] is None
            assert entry["rows"][1]["bill_length_mm"] == 45.1  # float32's shortest decimal, not 45.0999...
            assert entry["rows"][1]["island"] == ""
            assert entry["rows"][0]["body_mass_g"] is None and entry["rows"][1]["body_mass_g"] == 5000
            assert entry["outputs"][0]["scores"] == [0.5, None]


def test_rollback_skips_missing_and_unblessed_versions(paths):
    _push(paths.serving_model_dir, 1)
    _push(paths.serving_model_dir, 2, blessed=False)
    _push(paths.serving_model_dir, 3, blessed=None)  # no blessing record at all
    _push(paths.serving_model_dir, 4, complete=False)  # saved_model.pb not (yet) there
    _push(paths.serving_model_dir, 5)
    versions._write(paths, {STABLE: 5})
    with pytest.raises(versions.RollbackPending, match="Version 1 was not loaded"):
        versions.rollback(paths)
    assert versions.rollback(paths) == {STABLE: 1}
    for version, reason in ((2, "not blessed"), (3, "not blessed"), (4, "is not in"), (9, "is not in")):
        with pytest.raises(versions.VersionError, match=reason):
            versions.set_canary(paths, version)
    with pytest.raises(versions.VersionError, match="No version is labelled canary"):
        versions.promote(paths)
    assert versions.current_labels(paths) == {STABLE: 1}


def test_promote_refuses_a_canary_that_disappeared(paths):
    _push(paths.serving_model_dir, 1)
    _push(paths.serving_model_dir, 2)
    versions._write(paths, {STABLE: 1})
    versions.set_canary(paths, 2)
    os.remove(os.path.join(paths.serving_model_dir, "2", "saved_model.pb"))
    with pytest.raises(versions.VersionError, match="Version 2 is not in"):
        versions.promote(paths)
    assert versions.current_labels(paths) == {STABLE: 1, CANARY: 2}


def test_cli_versions_canary_promote_rollback(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"output_dir: {tmp_path / 'outputs'}\ndata_root: {DATA_ROOT}\n"
                           f"schema_path: {SCHEMA_PATH}\n")
    base = os.path.join(str(tmp_path), "outputs", "serving_model", "penguin")
    _push(base, 1)
    _push(base, 2)
    runner = CliRunner()

    def tfxt(*args):
        return runner.invoke(main, ["serving", *args, "--config", str(config_file)])

    result = tfxt("config")
    assert result.exit_code == 0, result.output
    assert "models.config" in result.output
    result = tfxt("canary", "2")
    assert result.exit_code == 1 and "already stable" in result.output  # newest blessed is stable
    result = tfxt("rollback")  # version 1 is not loaded: it loads first, stable moves on the second call
    assert result.exit_code == 1 and "run `tfxt serving rollback` again" in result.output
    assert tfxt("rollback").exit_code == 0
    result = tfxt("canary", "2")
    assert result.exit_code == 0 and "canary=2, stable=1" in result.output
    listing = tfxt("versions").output
    assert "2            yes      canary" in listing and "1            yes      stable" in listing
    assert "previous=1, stable=2" in tfxt("promote").output
    result = tfxt("canary", "7")
    assert result.exit_code == 1 and "Version 7 is not in" in result.output


def test_serving_model_sits_between_the_evaluator_and_the_pusher(tmp_path):
    from pipeline.pipeline import create_pipeline

    components = {c.id: c for c in create_pipeline(_config(tmp_path)).components}
    serving_model, pusher = components["ServingModel"], components["Pusher"]
    assert serving_model.inputs["model"].producer_component_id == "Trainer"
    assert serving_model.inputs["examples"].producer_component_id == "CsvExampleGen"  # raw, for warmup
    assert serving_model.inputs["blessing"].producer_component_id == "Evaluator"
    assert serving_model.exec_properties["model_name"] == "penguin"
    assert pusher.inputs["model"].producer_component_id == "ServingModel"
    assert pusher.inputs["model_blessing"].producer_component_id == "Evaluator"


def test_request_log_writes_in_batches_and_close_writes_the_rest(tmp_path):
    """The writer wakes when `flush_records` entries wait (or after flush_seconds), not per request."""
    import numpy as np

    from serving.request_log import RequestLog

    path = tmp_path / "requests.jsonl"
    log = RequestLog(str(path), flush_seconds=3600, flush_records=4)
    inputs = {"island": np.array([b"Dream"], dtype=object), "body_mass_g": np.array([3500], np.int64)}
    outputs = {"scores": np.array([[0.25, 0.75]], np.float32)}
    log.write("grpc", "predict", "penguin", 3, "serving_raw", "OK", 0.0, inputs, outputs)
    assert path.exists() and path.read_text() == ""  # queued, not written per request
    for _ in range(3):
        log.write("grpc", "predict", "penguin", 3, "serving_raw", "OK", 0.0, inputs, outputs)
    deadline = time.time() + 30
    while len(path.read_text().splitlines()) < 4 and time.time() < deadline:
        time.sleep(0.01)
    assert len(path.read_text().splitlines()) == 4  # the fourth entry woke the writer
    log.write("rest", "predict", "penguin", 3, None, "INVALID_ARGUMENT", 0.0)
    log.close()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(entries) == 5 and entries[-1]["status"] == "INVALID_ARGUMENT" and "rows" not in entries[-1]
    assert entries[0]["rows"] == [{"island": "Dream", "body_mass_g": 3500}]
    assert entries[0]["outputs"] == [{"scores": [0.25, 0.75]}]
    assert entries[0]["time"].endswith("Z") and entries[0]["latency_ms"] > 0

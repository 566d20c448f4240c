"""The local server's REST front end with no model loaded: no pipeline run, so not e2e.

A request that fails in an unforeseen way must still get TF Serving's error JSON with
status 500, not a dropped connection, and the server must keep answering afterwards.
"""

import http.client
import json

import pytest

from serving.model_store import ModelStore
from serving.server import LocalServer


@pytest.fixture
def server(tmp_path):
    store = ModelStore(model_name="penguin", base_path=str(tmp_path), warmup=False)
    with LocalServer(store, rest_port=0, grpc_port=0) as running:
        yield running


def _get(server, path):
    connection = http.client.HTTPConnection(server.host, server.rest_port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_an_unexpected_error_is_a_500_with_tf_serving_error_json(server, monkeypatch):
    def broken_status(*args):
        raise RuntimeError("status table is corrupt")

    monkeypatch.setattr(server, "status_json", broken_status)
    assert _get(server, "/v1/models/penguin") == (500, {"error": "RuntimeError: status table is corrupt"})
    assert 'status="INTERNAL"' in server.metrics.render()
    # The handler survived: the next request is answered as usual.
    status, body = _get(server, "/v1/models/penguin/metadata")
    assert status == 404 and "error" in body

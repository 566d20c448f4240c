"""The local TF Serving-compatible server: REST on 8501 and gRPC on 8500, on 127.0.0.1.

This is NOT TensorFlow Serving. Production serves the pushed model with the
real `tensorflow_model_server` (the `tensorflow/serving` image), which cannot
be installed on this development machine. This server speaks the same REST and
gRPC APIs (`serving.rest`, `serving.grpc_service`) over the versions in the
serving directory, honours models.config (`serving.model_store`), and writes a
request log (`serving.request_log`), so clients, requests and tests work the
same against both. Concurrent Predict requests over either API merge into one
model call (`serving.batching`, `serving.enable_batching`), as TF Serving's
`--enable_batching` merges them.

    with LocalServer.from_config(config) as server:
        print(server.rest_port, server.grpc_port)

`tfxt serving serve` (and `make serve`) run it in the foreground.
"""

import asyncio
import collections
import json
import threading
from concurrent import futures
from typing import Optional

import grpc

from pipeline.config import PipelineConfig
from serving.batching import Batcher
from serving.model_store import ModelStore
from serving.request_log import RequestLog
from serving.server_files import PROMETHEUS_PATH


class Metrics:
    """Request counters and latency sums, rendered in Prometheus' text format."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = collections.Counter()
        self._latency = collections.Counter()

    def count(self, model: str, method: str, status: str, seconds: float = 0.0) -> None:
        with self._lock:
            self._counts[(model, method, status)] += 1
            self._latency[(model, method)] += seconds

    def render(self) -> str:
        with self._lock:
            lines = ["# TYPE tfxt_serving_request_count counter"]
            lines += [f'tfxt_serving_request_count{{model_name="{m}",api="{a}",status="{s}"}} {n}'
                      for (m, a, s), n in sorted(self._counts.items())]
            lines.append("# TYPE tfxt_serving_request_latency_seconds_sum counter")
            lines += [f'tfxt_serving_request_latency_seconds_sum{{model_name="{m}",api="{a}"}} {t:.6f}'
                      for (m, a), t in sorted(self._latency.items())]
        return "\n".join(lines) + "\n"


class LocalServer:
    """Serves a `ModelStore` over REST and gRPC until `stop()`."""

    def __init__(self, store: ModelStore, host: str = "127.0.0.1", rest_port: int = 8501,
                 grpc_port: int = 8500, max_request_bytes: int = 4 * 1024 * 1024,
                 request_log: Optional[RequestLog] = None, grpc_workers: int = 16,
                 batching: bool = True, max_batch_size: int = 32):
        self.store = store
        # Shared by REST and gRPC: concurrent Predict requests of both merge into one model call.
        self.batcher = Batcher(batching, max_batch_size)
        self.host = host
        self.max_request_bytes = max_request_bytes
        self.request_log = request_log or RequestLog(None)
        self.metrics = Metrics()
        self.prometheus_path = PROMETHEUS_PATH
        self._requested_ports = (rest_port, grpc_port)
        self._grpc_workers = grpc_workers
        self._rest = None
        self._grpc = None
        self.rest_port: Optional[int] = None
        self.grpc_port: Optional[int] = None

    @classmethod
    def from_config(cls, config: PipelineConfig, **overrides) -> "LocalServer":
        """The server for the pipeline's serving directory and models.config."""
        from serving.server_files import serving_paths
        from serving.versions import write_serving_files

        paths = serving_paths(config)
        write_serving_files(config)  # keeps existing labels; creates the files on first use
        settings = config.serving
        store = ModelStore(models_config=paths.models_config, poll_seconds=settings.poll_seconds,
                           allow_unavailable_labels=settings.allow_version_labels_for_unavailable_models)
        options = dict(host=settings.host, rest_port=settings.rest_port, grpc_port=settings.grpc_port,
                       max_request_bytes=settings.max_request_bytes,
                       batching=settings.enable_batching, max_batch_size=settings.max_batch_size,
                       request_log=RequestLog(paths.request_log, settings.request_log_sample_rate,
                                              settings.request_log_max_bytes, settings.request_log_backups))
        options.update(overrides)
        return cls(store, **options)

    def start(self) -> "LocalServer":
        """Loads the models, then opens both ports (0 picks a free port)."""
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        from serving import grpc_service
        from serving.rest import RestServer

        self.store.start()
        rest_port, grpc_port = self._requested_ports
        self._grpc_loop = asyncio.new_event_loop()
        self._grpc_pool = futures.ThreadPoolExecutor(max_workers=self._grpc_workers)
        threading.Thread(target=self._grpc_loop.run_forever, name="grpc", daemon=True).start()

        async def start_grpc():
            server = grpc.aio.server(options=[("grpc.max_receive_message_length", self.max_request_bytes),
                                              ("grpc.max_send_message_length", self.max_request_bytes)])
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(grpc_service.asynchronous(
                grpc_service.PredictionService(self), prediction_service_pb2_grpc.PredictionServiceServicer,
                self._grpc_pool), server)
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(grpc_service.asynchronous(
                grpc_service.ModelService(self), model_service_pb2_grpc.ModelServiceServicer,
                self._grpc_pool, in_pool=("HandleReloadConfigRequest",)), server)
            try:
                port = server.add_insecure_port(f"{self.host}:{grpc_port}")
            except RuntimeError:
                port = 0
            if port:
                await server.start()
            return server, port

        self._grpc, self.grpc_port = asyncio.run_coroutine_threadsafe(start_grpc(), self._grpc_loop).result()
        if not self.grpc_port:
            raise OSError(f"Cannot listen for gRPC on {self.host}:{grpc_port}; is the port in use?")
        self._rest = RestServer((self.host, rest_port), self)
        self.rest_port = self._rest.server_address[1]
        threading.Thread(target=self._rest.serve_forever, name="rest", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()
        if self._grpc is not None:
            asyncio.run_coroutine_threadsafe(self._grpc.stop(grace=2), self._grpc_loop).result(10)
            self._grpc_loop.call_soon_threadsafe(self._grpc_loop.stop)
            self._grpc_pool.shutdown(wait=False)
            self._grpc = None
        self.store.stop()
        self.request_log.close()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # JSON views shared with the REST front end -------------------------------

    def status_json(self, name, version=None, label=None) -> dict:
        from tensorflow_serving.apis import model_pb2

        from serving.grpc_service import model_status
        from serving.payloads import message_dict

        spec = model_pb2.ModelSpec(name=name)
        if version is not None:
            spec.version.value = version
        if label is not None:
            spec.version_label = label
        return message_dict(model_status(self, spec))

    def metadata_json(self, name, version=None, label=None) -> dict:
        from google.protobuf import json_format

        from serving.grpc_service import signature_def_map

        loaded = self.store.resolve(name, version, label)
        return {
            "model_spec": {"name": loaded.name, "signature_name": "", "version": str(loaded.version)},
            "metadata": {"signature_def": json_format.MessageToDict(
                signature_def_map(loaded), preserving_proto_field_name=True)},
        }

    def describe(self) -> str:
        return json.dumps({"rest": f"http://{self.host}:{self.rest_port}",
                           "grpc": f"{self.host}:{self.grpc_port}",
                           "models": {n: self.store.labels(n) for n in self.store.model_names()}})

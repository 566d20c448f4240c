"""Server-side batching of concurrent Predict requests, for the local server's REST and gRPC APIs.

TF Serving's `--enable_batching` queues requests and merges them into one
model call (`batching_parameters.txt`: `max_batch_size` rows per call, waiting
up to `batch_timeout_micros` for a batch to fill). The local server merges
without waiting, so a lone client pays nothing: a request runs at once when no
call of its kind is running; requests that arrive while one runs are merged
into the next call (concatenated along dim 0, at most `max_batch_size` rows),
and the outputs are split back by each request's row count. "Its kind" is the
same loaded version, signature, output filter, input names and per-row shapes
and dtypes, so merged inputs always concatenate.

Each request is checked on its own first (`LoadedVersion.prepare`), so a bad
request gets its own INVALID_ARGUMENT and never joins a batch. If a merged call
fails anyway (the model refused some row's values), each request of it runs
again alone, so only the request at fault gets the error. Signatures whose
inputs or outputs lack a batch dimension (dim 0 of -1) are never merged.

`LocalServer` owns one `Batcher`; `serving.rest` and `serving.grpc_service`
call `Batcher.predict` instead of `LoadedVersion.predict`.
"""

import threading
from typing import Any, Dict, List, Optional

import grpc
import numpy as np

from serving.errors import ServingError


class _Task:
    """One request waiting in a batch: its tensors, then its outputs or its error."""

    def __init__(self, tensors: Dict[str, Any], rows: int):
        self.tensors = tensors
        self.rows = rows
        self.outputs: Optional[Dict[str, np.ndarray]] = None
        self.error: Optional[ServingError] = None
        self.finished = False
        # Set by the thread that ran the previous batch: this request's thread runs these next.
        self.lead: Optional[List["_Task"]] = None
        # Only a request that waits needs one (a lone request runs at once).
        self.wake: Optional[threading.Event] = None


class _Lane:
    """The requests of one kind: whether a call runs, and who waits for the next."""

    def __init__(self, function, wanted):
        self.function = function
        self.wanted = wanted
        self.running = False
        self.waiting: List[_Task] = []


class Batcher:
    """Merges concurrent Predict requests of one kind into one model call; thread-safe."""

    def __init__(self, enabled: bool = True, max_batch_size: int = 32):
        self.enabled = enabled
        self.max_batch_size = max_batch_size
        self._lock = threading.Lock()
        self._lanes: Dict[tuple, _Lane] = {}

    def predict(self, loaded, signature_name: str, inputs, output_filter: Optional[List[str]] = None
                ) -> Dict[str, np.ndarray]:
        """`loaded.predict(signature_name, inputs, output_filter)`, merged with concurrent requests."""
        function, tensors, wanted = loaded.prepare(signature_name, inputs, output_filter)
        rows = {int(t.shape[0]) if len(t.shape) else -1 for t in tensors.values()}
        if (not self.enabled or len(rows) != 1 or min(rows) < 1 or min(rows) >= self.max_batch_size
                or not loaded.batchable(signature_name)):
            return loaded.call(function, tensors, wanted)
        key = (id(loaded), signature_name, tuple(wanted or ()),
               tuple(sorted((k, t.dtype, tuple(t.shape[1:])) for k, t in tensors.items())))
        task = _Task(tensors, rows.pop())
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(function, wanted)
            if lane.running:
                task.wake = threading.Event()
                lane.waiting.append(task)
            else:
                lane.running = True
                task.lead = [task]
        if task.lead is None:
            task.wake.wait()
        if not task.finished:
            self._lead(key, lane, task.lead)
        if task.error is not None:
            raise task.error
        return task.outputs

    def _lead(self, key: tuple, lane: _Lane, batch: List[_Task]) -> None:
        """Runs `batch`, then hands the requests that waited meanwhile to the first of them."""
        try:
            _run(lane.function, lane.wanted, batch)
        except Exception as e:  # noqa: BLE001 - a bug here must answer, not leave the batch hanging
            for task in batch:
                if task.outputs is None and task.error is None:
                    task.error = ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
        successor = None
        with self._lock:
            if lane.waiting:
                size, taken = 0, 0
                for task in lane.waiting:
                    if taken and size + task.rows > self.max_batch_size:
                        break
                    size, taken = size + task.rows, taken + 1
                successor = lane.waiting[0]
                successor.lead, lane.waiting = lane.waiting[:taken], lane.waiting[taken:]
            else:
                lane.running = False
                del self._lanes[key]
        for task in batch:
            task.finished = True
            if task.wake is not None:
                task.wake.set()
        if successor is not None:
            successor.wake.set()


def _run(function, wanted, batch: List[_Task]) -> None:
    """One model call for the whole batch; the outputs (or each request's own error) land on its tasks."""
    from serving.inference import LoadedVersion

    if len(batch) == 1:
        _run_alone(function, wanted, batch[0])
        return
    merged = {key: _concatenate([task.tensors[key] for task in batch]) for key in batch[0].tensors}
    total = sum(task.rows for task in batch)
    try:
        outputs = LoadedVersion.call(function, merged, wanted)
    except ServingError:
        outputs = None
    if outputs is None or any(np.ndim(v) == 0 or len(v) != total for v in outputs.values()):
        # The merged call failed or lost the batch dimension: each request alone gets its own answer.
        for task in batch:
            _run_alone(function, wanted, task)
        return
    start = 0
    for task in batch:
        task.outputs = {name: value[start:start + task.rows] for name, value in outputs.items()}
        start += task.rows


def _concatenate(values: List[Any]):
    """Along dim 0: numpy arrays (`LoadedVersion.prepare` keeps them) with numpy, tensors with TF."""
    if all(isinstance(v, np.ndarray) for v in values):
        return np.concatenate(values, axis=0)
    import tensorflow as tf

    return tf.concat(values, axis=0)


def _run_alone(function, wanted, task: _Task) -> None:
    from serving.inference import LoadedVersion

    try:
        task.outputs = LoadedVersion.call(function, task.tensors, wanted)
    except ServingError as e:
        task.error = e

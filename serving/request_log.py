"""The local server's request log: one JSON object per line, and its reader for skew detection.

Each successful request is logged with its raw inputs, one row per example
(the same rows `serving.payloads` builds, so they compare directly with the
training CSV or TFDV statistics), its outputs, the model version that answered,
the API and the latency; failed requests are logged without rows. A sample
rate below 1 logs that fraction of requests.

Every line is strict JSON (RFC 8259): a missing or non-finite number (NaN,
Infinity, `serving_raw`'s missing INT marker) is written as null, never as the
bare `NaN` that strict parsers refuse. The file rotates by size with the standard library's
RotatingFileHandler: requests.jsonl grows to `max_bytes`, then becomes
requests.jsonl.1 (older ones .2, .3, ... up to `backups`). The line schema is
in the README ("The request log"); `SCHEMA_VERSION` is written in each line and
changes only when a field changes meaning. The drift and skew checks read it.

`read_rows` reads the raw rows back (`tfxt monitor skew`, `pipeline.ops.monitoring`).
"""

import glob
import json
import logging
import logging.handlers
import math
import os
import queue
import random
import re
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from serving import payloads

SCHEMA_VERSION = 1


class RequestLog:
    """Appends JSON lines to `path`, rotating by size; thread-safe. No path or a zero rate logs nothing."""

    def __init__(self, path: Optional[str], sample_rate: float = 1.0, max_bytes: int = 64 * 1024 * 1024,
                 backups: int = 5):
        self.path = path
        self.sample_rate = sample_rate
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._queue: Optional[_DeferredQueueHandler] = None
        self._listener: Optional[logging.handlers.QueueListener] = None

    def write(self, api: str, method: str, model: Optional[str], version: Optional[int],
              signature: Optional[str], status: str, started: float,
              inputs: Optional[Mapping[str, np.ndarray]] = None,
              outputs: Optional[Mapping[str, np.ndarray]] = None) -> None:
        """Queues one entry; a background thread turns it into a JSON line, off the request's path."""
        if not self.path or self.sample_rate <= 0 or random.random() >= self.sample_rate:
            return
        entry: Dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "time": _utc_now(),
            "api": api, "method": method, "model": model, "version": version,
            "signature": signature, "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        with self._lock:
            if self._queue is None:
                self._start()
            self._queue.handle(logging.makeLogRecord(
                {"msg": "", "levelno": logging.INFO, "entry": entry, "inputs": inputs, "outputs": outputs}))

    def _start(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        # The standard library's size-based rotation, fed by its queue listener thread.
        files = logging.handlers.RotatingFileHandler(self.path, maxBytes=self.max_bytes,
                                                     backupCount=self.backups, encoding="utf-8")
        files.setFormatter(_JsonLineFormatter())
        self._queue = _DeferredQueueHandler(queue.SimpleQueue())
        self._listener = logging.handlers.QueueListener(self._queue.queue, files)
        self._listener.start()

    def close(self) -> None:
        """Writes what is queued, then closes the file."""
        with self._lock:
            if self._listener is not None:
                self._listener.stop()
                for handler in self._listener.handlers:
                    handler.close()
                self._listener = self._queue = None


class _DeferredQueueHandler(logging.handlers.QueueHandler):
    """Queues the record as it is: the JSON is built in the listener's thread, not the request's."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = dict(record.entry)
        if record.inputs is not None:
            entry["rows"] = input_rows(_shortest_floats(record.inputs))
        if record.outputs is not None:
            outputs = _shortest_floats(record.outputs)
            entry["outputs"] = payloads.json_rows(dict(outputs)) if _same_length(outputs) else {
                k: payloads.to_json(v, k) for k, v in outputs.items()}
        return json.dumps(strict_json(entry), allow_nan=False)


def _shortest_floats(arrays: Mapping[str, Any]) -> Dict[str, Any]:
    """float32 arrays as the shortest decimals that read back to the same float32 (45.1, not 45.0999984)."""
    result = {}
    for key, value in arrays.items():
        if isinstance(value, np.ndarray) and value.dtype == np.float32:
            value = np.asarray([float(str(x)) for x in value.reshape(-1)], np.float64).reshape(value.shape)
        result[key] = value
    return result


def strict_json(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (JSON null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def input_rows(inputs: Mapping[str, np.ndarray]) -> List[Dict[str, Any]]:
    """Raw feature rows of a request: parsed tf.Examples, or the raw columns row by row."""
    if len(inputs) == 1:
        (key, value), = inputs.items()
        values = np.reshape(np.asarray(value, dtype=object), [-1])
        if len(values) and all(isinstance(v, bytes) for v in values):
            import tensorflow as tf

            try:
                return [payloads.row_from_example(tf.train.Example.FromString(v)) for v in values]
            except Exception:  # noqa: BLE001 - not serialized Examples: log the values as they are
                pass
    if _same_length(inputs):
        return payloads.rows_from_raw_columns(dict(inputs))
    return [{k: payloads.to_json(v, k) for k, v in inputs.items()}]


def _same_length(arrays: Mapping[str, np.ndarray]) -> bool:
    lengths = {len(v) if np.ndim(v) else -1 for v in arrays.values()}
    return len(lengths) == 1 and -1 not in lengths


def _utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def log_files(path: str) -> List[str]:
    """`path` and its rotated siblings (`path.1`, `path.2`, ...), oldest first.

    Rotation numbers count up with age (`.1` is the most recent rotated file),
    so the highest number is read first and `path` itself last.
    """
    rotated = [p for p in glob.glob(glob.escape(path) + ".*") if re.fullmatch(r"\.\d+", p[len(path):])]
    rotated.sort(key=lambda p: int(p[len(path) + 1:]), reverse=True)
    return rotated + ([path] if os.path.exists(path) else [])


def read_rows(path: str) -> Tuple[List[Dict[str, Any]], int]:
    """The logged raw input rows of every successful request, and the count of malformed lines.

    Reads `path` and its rotated files (`log_files`). A line that is not a JSON
    object, or whose `rows` is not a list of objects, is malformed: it is
    skipped and counted. Entries without rows (failed requests) are not
    malformed. Raises FileNotFoundError when neither `path` nor a rotated file exists.
    """
    files = log_files(path)
    if not files:
        raise FileNotFoundError(f"No request log at {path}.")
    rows: List[Dict[str, Any]] = []
    malformed = 0
    for name in files:
        with open(name, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    malformed += 1
                    continue
                logged = entry.get("rows", []) if isinstance(entry, dict) else None
                if not isinstance(logged, list) or not all(isinstance(r, dict) for r in logged):
                    malformed += 1
                    continue
                rows.extend(logged)
    return rows, malformed

"""Warmup requests and the blessing record inside each pushed model version.

TF Serving replays `assets.extra/tf_serving_warmup_requests` (PredictionLog
records) when it loads a version, before the version takes traffic, so the
first real requests do not pay for graph tracing. The requests here are built
from real examples of the eval split and cover every API clients use:
classify and predict on `serving_default`, predict on `serving_raw`.

`assets.extra/blessing.json` records the Evaluator's verdict on the model, so
that `serving.versions` can tell blessed versions from others wherever the
serving directory lives (local disk, GCS, a volume), without ML Metadata.

Called by the `ServingModel` component (`pipeline.components.serving_model`), the local
server (which replays warmup requests too) and the tests.
"""

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

from models import features

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
BLESSING_FILE = os.path.join("assets.extra", "blessing.json")


def warmup_logs(examples: Sequence[Any], model_name: str) -> List[Any]:
    """PredictionLog records for `examples` (tf.train.Example, label removed).

    One request per API and batch size: a single example and all of them.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, model_pb2, predict_pb2, prediction_log_pb2

    from pipeline.training import signatures
    from serving import payloads

    rows = [payloads.row_from_example(e) for e in examples]
    logs = []
    for batch in (examples[:1], list(examples)):
        serialized = [e.SerializeToString() for e in batch]
        classify = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(
            name=model_name, signature_name=signatures.SERVING_DEFAULT))
        classify.input.example_list.examples.extend(batch)
        logs.append(prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=classify)))
        predict = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
            name=model_name, signature_name=signatures.SERVING_DEFAULT))
        predict.inputs["examples"].CopyFrom(tf.make_tensor_proto(serialized, dtype=tf.string))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=predict)))
        raw = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
            name=model_name, signature_name=signatures.SERVING_RAW))
        for key, column in payloads.raw_columns(rows[:len(batch)]).items():
            dtype = tf.string if column.dtype == object else tf.as_dtype(column.dtype)
            raw.inputs[key].CopyFrom(tf.make_tensor_proto(column.tolist(), dtype=dtype))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=raw)))
    return logs


def write_warmup(model_dir: str, examples: Sequence[Any], model_name: str) -> str:
    """Writes the warmup file into the SavedModel at `model_dir`; returns its path."""
    import tensorflow as tf

    path = os.path.join(model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_logs(examples, model_name):
            writer.write(log.SerializeToString())
    return path


def read_warmup(model_dir: str) -> List[Any]:
    """The PredictionLog records of the version at `model_dir` (empty if it has none)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(path)]


def read_examples(split_dir: str, limit: int) -> Iterator[Any]:
    """Up to `limit` tf.train.Examples from ExampleGen's gzipped TFRecords, label removed."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(split_dir, "*")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    for record in dataset:
        example = tf.train.Example.FromString(record.numpy())
        if features.LABEL_KEY in example.features.feature:
            del example.features.feature[features.LABEL_KEY]
        yield example


def write_blessing(model_dir: str, blessed: bool, details: Optional[Dict[str, Any]] = None) -> None:
    """Records whether the model in `model_dir` was blessed, and by what."""
    import tensorflow as tf

    path = os.path.join(model_dir, BLESSING_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"blessed": bool(blessed), **(details or {})}, f, indent=2, sort_keys=True)


def read_blessing(model_dir: str) -> Dict[str, Any]:
    """The blessing record of a version; {"blessed": False} when it has none or it is unreadable."""
    path = os.path.join(model_dir, BLESSING_FILE)
    try:
        if "://" in path:
            import tensorflow as tf

            with tf.io.gfile.GFile(path) as f:
                record = json.load(f)
        else:
            with open(path) as f:
                record = json.load(f)
    except (OSError, ValueError):
        return {"blessed": False}
    return record if isinstance(record, dict) else {"blessed": False}

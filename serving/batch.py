"""Batch (offline) predictions with Beam's RunInference over a CSV or TFRecord input.

    run_batch_predictions(model_dir, "data/new/*.csv", beam_args=beam_pipeline_args(config))

Each input row is read as a raw feature dict (CSV with a header, or
tf.Examples in TFRecord files, gzipped or not), batched by RunInference and
sent through the model's `serving_raw` signature; each output line (JSON) holds
the input row next to its prediction:

    {"input": {"island": "Biscoe", ...}, "prediction": {"predicted_class": "Gentoo", "scores": [...]}}

It runs with the pipeline's own Beam arguments (`pipeline.orchestration.beam_pipeline_args`):
Beam's in-process runner here, Dataflow with the config's `orchestration` section
(--setup_file=./setup.py so workers can import this package).
`tfxt serving batch` is the command; tests call this function directly.
"""

import csv
import io
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipeline.training import signatures


class RawRowModelHandler(ModelHandler[Dict[str, Any], PredictionResult, Any]):
    """RunInference's handler for raw feature rows and the `serving_raw` signature."""

    def __init__(self, model_dir: str, max_batch_size: int = 256):
        super().__init__()
        self.model_dir = model_dir
        self.max_batch_size = max_batch_size

    def load_model(self):
        import tensorflow as tf

        return tf.saved_model.load(self.model_dir)

    def run_inference(self, batch: Sequence[Dict[str, Any]], model, inference_args=None
                      ) -> Iterable[PredictionResult]:
        from serving import payloads

        inputs = {k: v if v.dtype != object else v.astype(bytes)
                  for k, v in payloads.raw_columns(batch).items()}
        outputs = model.signatures[signatures.SERVING_RAW](**inputs)
        rows = payloads.json_rows({k: v.numpy() for k, v in outputs.items()})
        return [PredictionResult(example, row) for example, row in zip(batch, rows, strict=True)]

    def batch_elements_kwargs(self):
        return {"max_batch_size": self.max_batch_size}

    def get_metrics_namespace(self) -> str:
        return "tfxt_batch_predictions"


def run_batch_predictions(model_dir: str, input_pattern: str, output_prefix: Optional[str] = None,
                          beam_args: Sequence[str] = (), input_format: str = "auto") -> List[str]:
    """Predicts every row of `input_pattern`; returns the written output files.

    Args:
      model_dir: a pushed version, <serving_model_dir>/<version>.
      input_pattern: CSV files with a header, or TFRecord files of tf.Examples.
      output_prefix: where predictions go (default: a `predictions/` folder next
        to the input); files are <prefix>-NNNNN-of-NNNNN.jsonl.
      beam_args: Beam pipeline options, the same as the pipeline's.
      input_format: "csv", "tfrecord" or "auto" (by file name).
    """
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    input_format = _format(input_pattern, input_format)
    if output_prefix is None:
        output_prefix = os.path.join(os.path.dirname(input_pattern), "predictions", "predictions")
    options = PipelineOptions(list(beam_args))
    with beam.Pipeline(options=options) as pipeline:
        if input_format == "csv":
            header = _csv_header(input_pattern)
            rows = (pipeline
                    | "ReadCsv" >> beam.io.ReadFromText(input_pattern, skip_header_lines=1)
                    | "ParseCsv" >> beam.Map(parse_csv_line, header))
        else:
            rows = (pipeline
                    | "ReadTFRecord" >> beam.io.ReadFromTFRecord(
                        input_pattern, compression_type=_compression(input_pattern))
                    | "ParseExample" >> beam.Map(parse_example))
        _ = (rows
             | "RunInference" >> RunInference(RawRowModelHandler(model_dir))
             | "Format" >> beam.Map(lambda result: json.dumps(
                 {"input": result.example, "prediction": result.inference}))
             | "Write" >> beam.io.WriteToText(output_prefix, file_name_suffix=".jsonl"))
    from apache_beam.io.filesystems import FileSystems

    return sorted(m.path for m in FileSystems.match([output_prefix + "*.jsonl"])[0].metadata_list)


def parse_csv_line(line: str, header: Sequence[str]) -> Dict[str, Any]:
    """One CSV line as a raw row, each feature of its schema type; "" and NA left out as missing."""
    from serving import payloads

    values = next(csv.reader(io.StringIO(line)))
    return payloads.typed_row({key: value for key, value in zip(header, values, strict=False)
                               if value != "" and value.upper() != "NA"})


def parse_example(record: bytes) -> Dict[str, Any]:
    import tensorflow as tf

    from serving import payloads

    return payloads.row_from_example(tf.train.Example.FromString(record))


def _csv_header(pattern: str) -> List[str]:
    from apache_beam.io.filesystems import FileSystems

    matches = FileSystems.match([pattern])[0].metadata_list
    if not matches:
        raise FileNotFoundError(f"No input files match {pattern}.")
    with FileSystems.open(sorted(m.path for m in matches)[0]) as f:
        first = f.readline().decode("utf-8")
    return next(csv.reader(io.StringIO(first)))


def _format(pattern: str, requested: str) -> str:
    if requested != "auto":
        if requested not in ("csv", "tfrecord"):
            raise ValueError(f"input_format must be csv, tfrecord or auto, got {requested!r}.")
        return requested
    return "csv" if pattern.endswith(".csv") else "tfrecord"


def _compression(pattern: str) -> str:
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.GZIP if pattern.endswith(".gz") else CompressionTypes.AUTO

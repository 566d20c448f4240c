"""Scale benchmarks: the local pipeline at 10k/100k/1M synthetic rows, and Trainer input throughput.

    python -m bench scale                                   # 10k and 100k rows, both modes
    python -m bench.scale --rows 1000000 --modes in_memory  # add a size later

1. Pipeline cost. For each size and DirectRunner mode (`in_memory`,
   `multi_processing` with 2 workers) it writes penguin-like data with
   `pipeline.ops.synthetic`, runs `runners/local_runner.py` in a subprocess exactly
   as `make run` does (caching off, edge export off, fresh output dir, 50 training steps so
   the Trainer's cost does not grow with the data), and samples the resident
   memory of the runner and all its child processes (psutil) every 0.2 s.
   Per-component seconds come from ML Metadata.
2. Trainer input throughput. The same transformed training rows (Transform's
   output of the largest in_memory run) are read as batches (a) from the
   gzipped TFRecords with tf.data (`TFRecordDataset` + `parse_example`),
   (b) through TFXIO, the path `models.trainer` uses, and fed (c) from a
   pandas DataFrame via `from_tensor_slices`, (d) from a pandas DataFrame via
   a Python generator (the Keras `Sequence`/generator style).

Measurements are merged into bench/scale_results.json (keyed by size and mode),
so adding a size later keeps the others; BENCHMARKS.md is rendered from it.
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional

import yaml

from bench._measure import run_measured
from bench.report import write_section

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_PATH = os.path.join(REPO_ROOT, "bench", "scale_results.json")
MODES = {"in_memory": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
         "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]}
TRAIN_STEPS = 50
BATCH_SIZE = 256


def run_pipeline(rows: int, mode: str, work_dir: str) -> Dict:
    """One pipeline run on `rows` synthetic rows; returns wall time, peak memory, per-node seconds."""
    from pipeline.ops.synthetic import write_spans

    data_root = os.path.join(work_dir, "data")
    write_spans(data_root, rows, seed=0)
    config_path = os.path.join(work_dir, "config.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump({
            "output_dir": os.path.join(work_dir, "outputs"), "data_root": data_root,
            "schema_path": os.path.join(REPO_ROOT, "schema", "schema.pbtxt"),
            "enable_cache": False, "beam_args": MODES[mode],
            "hyperparameters": {"train_steps": TRAIN_STEPS, "batch_size": BATCH_SIZE},
            # The edge export scores six TFLite variants on the whole eval split; it is measured
            # on its own by `python -m bench edge`, so it stays out of the data-path numbers.
            "edge": {"enabled": False},
        }, f)
    env = {**os.environ, "TFXT_CONFIG": config_path}
    run = run_measured([sys.executable, os.path.join(REPO_ROOT, "runners", "local_runner.py")],
                       cwd=work_dir, log_path=os.path.join(work_dir, "run.log"), env=env)
    if run.returncode != 0:
        raise RuntimeError(f"The pipeline run failed ({rows} rows, {mode}); see {work_dir}/run.log")
    from pipeline.config import load_config
    from pipeline.ops.summary import summarize

    summary = summarize(load_config(config_path, base_dir=work_dir))
    return {"rows": rows, "mode": mode, "seconds": round(run.seconds, 1),
            "peak_rss_mib": round(run.peak_rss_mib),
            "cpu_seconds": round(run.cpu_seconds, 1),
            "nodes": {n.node_id: round(n.seconds, 1) for n in summary.nodes},
            "transformed_train": os.path.join(
                summary.node("Transform").outputs["transformed_examples"][0].uri, "Split-train"),
            "transform_graph": summary.node("Transform").outputs["transform_graph"][0].uri}


def input_throughput(transformed_train: str, transform_graph: str, passes: int = 2) -> Dict:
    """Rows per second for each way of feeding the same transformed rows in batches."""
    import numpy as np
    import pandas as pd
    import tensorflow as tf
    import tensorflow_transform as tft
    from tfx_bsl.public import tfxio

    files = sorted(glob.glob(os.path.join(transformed_train, "*.gz")))
    output = tft.TFTransformOutput(transform_graph)
    feature_spec = output.transformed_feature_spec()

    def tfrecord_dataset():
        return (tf.data.TFRecordDataset(files, compression_type="GZIP")
                .batch(BATCH_SIZE).map(lambda x: tf.io.parse_example(x, feature_spec),
                                       num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    def tfxio_dataset():
        source = tfxio.TFExampleRecord(file_pattern=files,
                                       schema=output.transformed_metadata.schema)
        return source.TensorFlowDataset(tfxio.TensorFlowDatasetOptions(
            batch_size=BATCH_SIZE, shuffle=False, num_epochs=1))

    started = time.monotonic()
    columns: Dict[str, List] = {key: [] for key in feature_spec}
    for batch in tfrecord_dataset():
        for key in feature_spec:
            columns[key].append(batch[key].numpy().reshape(len(batch[key]), -1)[:, 0])
    frame = pd.DataFrame({key: np.concatenate(values) for key, values in columns.items()})
    load_seconds = time.monotonic() - started
    rows = len(frame)

    def pandas_tensor_slices():
        return tf.data.Dataset.from_tensor_slices(dict(frame)).batch(BATCH_SIZE).prefetch(
            tf.data.AUTOTUNE)

    def pandas_generator():
        def batches():
            for start in range(0, rows, BATCH_SIZE):
                chunk = frame.iloc[start:start + BATCH_SIZE]
                yield {key: chunk[key].to_numpy() for key in frame.columns}

        signature = {key: tf.TensorSpec([None], tf.as_dtype(frame[key].dtype)) for key in frame.columns}
        return tf.data.Dataset.from_generator(batches, output_signature=signature)

    results = {"rows": rows, "batch_size": BATCH_SIZE, "passes": passes,
               "pandas_load_seconds": round(load_seconds, 2)}
    for name, make in (("tfrecord_tf_data", tfrecord_dataset), ("tfrecord_tfxio", tfxio_dataset),
                       ("pandas_from_tensor_slices", pandas_tensor_slices),
                       ("pandas_generator", pandas_generator)):
        for _ in make().take(2):  # warm up: tracing, file open
            pass
        started = time.monotonic()
        count = 0
        for _ in range(passes):
            for batch in make():
                count += int(next(iter(batch.values())).shape[0])
        results[name] = round(count / (time.monotonic() - started))
    return results


def render(results: Dict) -> str:
    """The markdown body of the section, from all stored measurements."""
    runs = sorted(results.get("pipeline", {}).values(), key=lambda r: (r["mode"], r["rows"]))
    lines = ["### Local pipeline (LocalDagRunner + DirectRunner), caching off, "
             f"batch {BATCH_SIZE}", "",
             "| rows | DirectRunner mode | training steps | wall time (s) | CPU time (s) | "
             "peak RSS incl. children (MiB) | CsvExampleGen (s) | StatisticsGen (s) | Transform (s) | "
             "Trainer (s) | Evaluator (s) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        nodes = run["nodes"]
        cpu = f"{run['cpu_seconds']:.0f}" if "cpu_seconds" in run else "n/a"
        lines.append(f"| {run['rows']:,} | {run['mode']} | {run.get('train_steps', TRAIN_STEPS)} | "
                     f"{run['seconds']:.0f} | {cpu} | {run['peak_rss_mib']:,} | "
                     f"{nodes.get('CsvExampleGen', 0):.0f} | {nodes.get('StatisticsGen', 0):.0f} | "
                     f"{nodes.get('Transform', 0):.0f} | {nodes.get('Trainer', 0):.0f} | "
                     f"{nodes.get('Evaluator', 0):.0f} |")
    notes = [f"- {run['rows']:,} rows, {run['mode']}: {run['note']}" for run in runs if run.get("note")]
    lines += [""] + notes if notes else []
    if results.get("note"):
        lines += ["", f"**Status:** {results['note']}"]
    lines += ["", "How the cost grows (each size against the previous one, same mode):", ""]
    for mode in MODES:
        by_rows = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["rows"])
        for small, large in zip(by_rows, by_rows[1:], strict=False):
            lines.append(f"- {mode}: {small['rows']:,} -> {large['rows']:,} rows "
                         f"(x{large['rows'] / small['rows']:.0f}): wall time "
                         f"x{large['seconds'] / small['seconds']:.1f}, CPU time "
                         f"x{large.get('cpu_seconds', 0) / max(small.get('cpu_seconds', 0), 1):.1f}, "
                         f"peak memory "
                         f"x{large['peak_rss_mib'] / small['peak_rss_mib']:.1f}")
    if not any(len([r for r in runs if r["mode"] == mode]) > 1 for mode in MODES):
        lines.append("- Not measured yet: it needs two sizes in the same mode.")
    sizes = sorted({r["rows"] for r in runs})
    lines += ["", f"Sizes measured: {', '.join(f'{s:,}' for s in sizes)} rows. Sizes "
              "and modes not listed were not run; add one with "
              "`python -m bench scale --rows N --modes MODE` (results merge by size and mode)."]
    throughput = results.get("throughput")
    if throughput:
        base = throughput["tfrecord_tf_data"]
        source = (f"the bundled data's transformed training rows repeated to {throughput['rows']:,}"
                  if throughput.get("replicated") else
                  f"the {throughput.get('source_rows', 0):,}-row run's transformed training rows")
        lines += ["", f"### Trainer input throughput ({throughput['rows']:,} rows, batch "
                  f"{throughput['batch_size']}, {throughput['passes']} passes; {source})", "",
                  "| input | rows/s | vs TFRecord + tf.data |", "|---|---:|---:|"]
        for name, label in (("tfrecord_tf_data", "TFRecord (gzip) + tf.data parse_example"),
                            ("tfrecord_tfxio", "TFRecord (gzip) via TFXIO (the Trainer's path)"),
                            ("pandas_from_tensor_slices", "pandas DataFrame in memory, from_tensor_slices"),
                            ("pandas_generator", "pandas DataFrame, Python generator of batches")):
            lines.append(f"| {label} | {throughput[name]:,} | {throughput[name] / base:.2f}x |")
        lines += ["", f"Building the DataFrame from the TFRecords took "
                  f"{throughput['pandas_load_seconds']} s (not counted above). Measured ratio "
                  f"TFRecord+tf.data / pandas generator: "
                  f"{base / throughput['pandas_generator']:.1f}x; TFRecord+tf.data / in-memory "
                  f"pandas tensor slices: {base / throughput['pandas_from_tensor_slices']:.2f}x."]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Pipeline scale and input throughput benchmarks.")
    parser.add_argument("--rows", default="10000,100000", help="Comma-separated sizes.")
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated DirectRunner modes.")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--render-only", action="store_true",
                        help="Only rewrite the BENCHMARKS.md section from bench/scale_results.json.")
    parser.add_argument("--throughput-from", metavar="WORK_DIR",
                        help="Only measure input throughput on the Transform output of an earlier "
                             "bench run's work dir (printed by that run) or any pipeline output dir.")
    parser.add_argument("--throughput-rows", type=int, default=0,
                        help="With --throughput-from: repeat its transformed rows up to this many.")
    args = parser.parse_args(argv or [])
    results = json.load(open(RESULTS_PATH)) if os.path.exists(RESULTS_PATH) else {}
    results.setdefault("pipeline", {})
    largest = None
    if args.render_only:
        args.rows = ""
    if args.throughput_from:
        largest = _transform_outputs(args.throughput_from)
        if args.throughput_rows:
            largest["transformed_train"] = replicate_records(
                largest["transformed_train"], args.throughput_rows, tempfile.mkdtemp(prefix="bench-rows-"))
            largest["rows"] = args.throughput_rows
            largest["replicated"] = True
        args.rows = ""
    from tqdm import tqdm

    cases = [(int(rows), mode) for rows in args.rows.split(",") if rows
             for mode in args.modes.split(",") if mode]
    # One step per pipeline run (minutes each); on a terminal only (disable=None).
    for rows, mode in tqdm(cases, unit="run", desc="scale runs", disable=None):
        work_dir = tempfile.mkdtemp(prefix=f"bench-scale-{rows}-{mode}-")
        tqdm.write(f"  {rows:,} rows, {mode}: {work_dir}")
        run = run_pipeline(rows, mode, work_dir)
        tqdm.write(f"    {run['seconds']:.0f} s, peak {run['peak_rss_mib']} MiB")
        results.pop("note", None)  # a status note about missing sizes is stale now
        results["pipeline"][f"{rows}/{mode}"] = {k: v for k, v in run.items()
                                                 if k not in ("transformed_train", "transform_graph")}
        if mode == "in_memory" and (largest is None or rows >= largest["rows"]):
            largest = run
        _save(results)
    if largest and not args.skip_throughput:
        throughput = input_throughput(largest["transformed_train"], largest["transform_graph"])
        throughput["source_rows"] = largest["rows"]
        throughput["replicated"] = largest.get("replicated", False)
        results["throughput"] = throughput
        print(f"    throughput: {throughput}", flush=True)
        _save(results)
    write_section("scale", "Pipeline scale and Trainer input throughput",
                  "python -m bench scale", render(results))
    return 0


def replicate_records(transformed_train: str, rows: int, out_dir: str, shards: int = 4) -> str:
    """Writes the transformed records of `transformed_train` repeated to `rows` records, in gzipped
    shards like Transform's, so throughput is measured on a realistic size when only a small
    Transform output is at hand."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(transformed_train, "*.gz")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for shard in range(shards):
        path = os.path.join(out_dir, f"transformed_examples-{shard:05d}-of-{shards:05d}.gz")
        with tf.io.TFRecordWriter(path, options) as writer:
            for i in range(shard, rows, shards):
                writer.write(records[i % len(records)])
    return out_dir


def _transform_outputs(work_dir: str) -> Dict:
    """The rows and Transform outputs of the bench run in `work_dir`."""
    root = os.path.join(work_dir, "outputs", "pipeline_root", "*", "Transform")
    train = sorted(glob.glob(os.path.join(root, "transformed_examples", "*", "Split-train")))
    graph = sorted(glob.glob(os.path.join(root, "transform_graph", "*")))
    if not train or not graph:
        raise FileNotFoundError(f"No Transform output under {work_dir}/outputs.")
    with open(os.path.join(work_dir, "config.yaml")) as f:
        data_root = yaml.safe_load(f)["data_root"]
    rows = sum(sum(1 for _ in open(p)) - 1 for p in glob.glob(os.path.join(data_root, "*", "*.csv")))
    return {"rows": rows, "transformed_train": train[-1], "transform_graph": graph[-1]}


def _save(results: Dict) -> None:
    # Merge with what another bench process saved meanwhile (sizes can run in parallel).
    stored = json.load(open(RESULTS_PATH)) if os.path.exists(RESULTS_PATH) else {}
    stored.setdefault("pipeline", {}).update(results.get("pipeline", {}))
    if "throughput" in results:
        stored["throughput"] = results["throughput"]
    if "note" not in results:  # main() dropped a stale status note: do not merge it back
        stored.pop("note", None)
    results.update(stored)
    with open(RESULTS_PATH, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

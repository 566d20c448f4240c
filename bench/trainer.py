"""Trainer step time on the penguin data: the pipeline's "ms/step", this checkout's settings
against variants, each run in a fresh process, interleaved (A B C A B C ...).

    make run                                   # once: a Transform output to train on
    python -m bench trainer --rounds 5
    python -m bench trainer --baseline /tmp/baseline   # adds another checkout (with this file in its bench/)

Each run calls `models.trainer.train` (the Trainer's own code, TFXIO input, TensorBoard
callback, the configured strategy) on the newest Transform output under `--pipeline-root`,
with the default hyperparameters. "ms/step" is what Keras prints at the end of the epoch:
the epoch's wall time, first-step tracing and validation included, over the training
steps; it is measured here from `on_train_begin` to `on_epoch_end` by a callback added to
`fit`, so it is not rounded to whole milliseconds. Steps-only time (to the start of
validation) and validation time are reported separately, and the process's CPU time over
the same span (all threads), which a shared machine's load moves far less than wall time.
The load average is recorded before every run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

from bench.report import write_section

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {
    "default": {},
    "steps_per_execution=1": {"steps_per_execution": 1},
    "deterministic_ops=false": {"deterministic_ops": False},
}


def measure_one(pipeline_root: str, overrides: Dict) -> Dict:
    """One training run in this process; returns its timings (called in a fresh subprocess)."""
    import dataclasses
    import tempfile
    import types

    import tensorflow as tf
    import tensorflow_transform as tft
    from tfx_bsl.public import tfxio

    import pipeline  # noqa: F401 - first: sets the process's Keras before TensorFlow loads
    from models import trainer
    from pipeline.config import Hyperparameters
    from pipeline.training import cluster

    marks: Dict[str, float] = {}

    class Phases(tf.keras.callbacks.Callback):
        # Epoch-level hooks only: a batch hook would make Keras call back after every execution.
        def on_train_begin(self, logs=None):
            marks["train_begin"] = time.perf_counter()
            marks["train_begin_cpu"] = time.process_time()

        def on_test_begin(self, logs=None):
            marks.setdefault("test_begin", time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            marks["epoch_end"] = time.perf_counter()
            marks["epoch_end_cpu"] = time.process_time()
            marks.update({f"metric_{k}": float(v) for k, v in (logs or {}).items()})

    fit = tf.keras.Model.fit

    def timed_fit(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [Phases()]
        history = fit(self, *args, **kwargs)
        marks["iterations"] = int(self.optimizer.iterations.numpy())
        return history

    tf.keras.Model.fit = timed_fit
    outputs = cluster.transform_outputs(pipeline_root)
    transform_output = tft.TFTransformOutput(outputs["transform_graph"])
    def dataset_factory(pattern, options, schema):
        return tfxio.TFExampleRecord(pattern, telemetry_descriptors=["Trainer"],
                                     schema=schema).TensorFlowDataset(options)

    accessor = types.SimpleNamespace(tf_dataset_factory=dataset_factory)

    def dataset(split):
        pattern = [os.path.join(outputs["transformed_examples"], f"Split-{split}", "*")]
        return lambda batch_size: trainer.make_dataset(accessor, pattern, transform_output, batch_size, 42)

    known = {f.name for f in dataclasses.fields(Hyperparameters)}
    hp = Hyperparameters(**{k: v for k, v in overrides.items() if k in known})
    args = trainer.TrainingArgs(hp, deterministic_ops=overrides.get("deterministic_ops", True))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer.train(args, transform_output, dataset("train"), dataset("eval"),
                      train_steps=hp.train_steps, eval_steps=hp.eval_steps, log_dir=log_dir)
    steps = hp.train_steps
    return {"ms_per_step": (marks["epoch_end"] - marks["train_begin"]) * 1000 / steps,
            "cpu_ms_per_step": (marks["epoch_end_cpu"] - marks["train_begin_cpu"]) * 1000 / steps,
            "steps_ms_per_step": (marks["test_begin"] - marks["train_begin"]) * 1000 / steps,
            "validation_ms": (marks["epoch_end"] - marks["test_begin"]) * 1000,
            "train_call_s": time.perf_counter() - started, "iterations": marks["iterations"],
            "loss": marks.get("metric_loss"), "val_accuracy": marks.get("metric_val_accuracy")}


def run_variant(checkout: str, pipeline_root: str, overrides: Dict) -> Dict:
    """`measure_one` in a fresh process with `checkout`'s code first on the path."""
    env = {**os.environ, "PYTHONPATH": checkout, "TF_CPP_MIN_LOG_LEVEL": "2"}
    load = os.getloadavg()
    process = subprocess.run(
        [sys.executable, "-m", "bench.trainer", "--one", json.dumps(overrides),
         "--pipeline-root", pipeline_root],
        cwd=checkout, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"The training run failed ({overrides}):\n{process.stderr[-3000:]}")
    printed = [line for line in process.stdout.splitlines() if "/step" in line]
    return {**json.loads(lines[-1][len("RESULT "):]), "load": load[0],
            "keras_line": printed[-1].split(" - ")[-1] if printed else ""}


def render(results: Dict[str, List[Dict]], loads: str) -> str:
    def median(runs, key):
        return statistics.median(run[key] for run in runs)

    rows = ["| variant | round | load (1 min) | ms/step (Keras's) | CPU ms/step | steps only ms/step | "
            "validation ms | Keras printed | iterations | loss | val_accuracy |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for label, runs in results.items():
        for i, run in enumerate(runs, 1):
            rows.append(f"| {label} | {i} | {run['load']:.1f} | {run['ms_per_step']:.2f} | "
                        f"{run['cpu_ms_per_step']:.2f} | {run['steps_ms_per_step']:.2f} | "
                        f"{run['validation_ms']:.0f} | "
                        f"{run['keras_line']} | {run['iterations']} | {run['loss']:.4f} | "
                        f"{run['val_accuracy']:.4f} |")
    base, base_cpu = median(results["default"], "ms_per_step"), median(results["default"], "cpu_ms_per_step")
    summary = [f"- {label}: median {median(runs, 'ms_per_step'):.2f} ms/step "
               f"({median(runs, 'ms_per_step') / base:.2f}x of default), "
               f"CPU {median(runs, 'cpu_ms_per_step'):.2f} ms/step "
               f"({median(runs, 'cpu_ms_per_step') / base_cpu:.2f}x), "
               f"steps only {median(runs, 'steps_ms_per_step'):.2f} ms/step"
               for label, runs in results.items()]
    return f"Load average (1, 5, 15 min) before and after: {loads}\n\n" + "\n".join(rows) + "\n\n" + \
        "\n".join(summary)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline-root",
                        default=os.path.join(REPO_ROOT, "outputs", "pipeline_root", "penguin"),
                        help="a pipeline root with a Transform output (default: this checkout's `make run`)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every variant")
    parser.add_argument("--baseline", help="another checkout of this template, run with its defaults")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"which of {', '.join(VARIANTS)} to run (comma-separated; default all)")
    parser.add_argument("--section", default="trainer",
                        help="the BENCHMARKS.md section to write (another keeps the default one)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process's variant (JSON overrides)
    args = parser.parse_args(argv)
    if args.one is not None:
        print("RESULT " + json.dumps(measure_one(args.pipeline_root, json.loads(args.one))), flush=True)
        return
    chosen = [label for label in args.variants.split(",") if label]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or "default" not in chosen:
        parser.error(f"--variants must include default and name only {', '.join(VARIANTS)}; "
                     f"got {args.variants}")
    variants = [(label, REPO_ROOT, VARIANTS[label]) for label in chosen]
    if args.baseline:
        variants.append((f"baseline ({os.path.basename(os.path.abspath(args.baseline))})",
                         os.path.abspath(args.baseline), {}))
    results: Dict[str, List[Dict]] = {label: [] for label, _, _ in variants}
    before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    for round_index in range(args.rounds):
        for label, checkout, overrides in variants:
            results[label].append(run_variant(checkout, os.path.abspath(args.pipeline_root), overrides))
            print(f"round {round_index + 1} {label}: {results[label][-1]}", flush=True)
    after = " ".join(f"{x:.1f}" for x in os.getloadavg())
    command = "python -m bench trainer " + " ".join(a for a in (argv or []) if a)
    title = "Trainer step time on the penguin data (default model, 300 steps)"
    write_section(args.section, title if args.section == "trainer" else f"{title} ({args.section})",
                  command.strip(), render(results, f"{before} / {after}"))


if __name__ == "__main__":
    main(sys.argv[1:])

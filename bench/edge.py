"""Edge variants benchmark: file size, weight bytes, per-example latency and accuracy.

`python -m bench edge [--outputs DIR]` exports every variant of the latest
pushed model of a finished run (default: the config's output_dir, i.e. what
`make run` left) into a temporary folder, then measures on this CPU:
- file size, and the bytes of constant buffers (weights) inside each .tflite;
- per-example latency: the TFLite interpreter (one invoke at batch 1) and the
  preprocessing spec (`apply_spec`), against one SavedModel `serving_default`
  call (a serialized tf.Example, Transform inside);
- accuracy and agreement on the eval split (the parity gate's numbers).
"""

import argparse
import json
import os
import tempfile
import time

REPEATS = 3


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench edge")
    parser.add_argument("--outputs", default=None, help="a run's output_dir (default: the config's)")
    args = parser.parse_args(argv)
    import tensorflow as tf
    import tensorflow_transform as tft

    from bench.report import write_section
    from edge.export import export_edge
    from edge.parity import read_rows
    from edge.predict import Predictor, apply_spec
    from edge.spec import to_example
    from pipeline.config import load_config
    from pipeline.ops.locate import latest_pushed_model, latest_run_inputs

    config = load_config(overrides={"output_dir": args.outputs} if args.outputs else None)
    model_dir = latest_pushed_model(config.serving_model_dir)
    transform_graph, examples = latest_run_inputs(config)
    output = tft.TFTransformOutput(transform_graph)
    eval_rows = read_rows(os.path.join(examples, "Split-eval"))
    with tempfile.TemporaryDirectory() as out_dir:
        started = time.perf_counter()
        blessing = export_edge(model_dir, output, read_rows(os.path.join(examples, "Split-train")),
                               eval_rows, out_dir, config.edge.max_accuracy_drop,
                               config.edge.representative_examples)
        export_seconds = time.perf_counter() - started
        with open(os.path.join(out_dir, "preprocessing_spec.json")) as f:
            spec = json.load(f)
        vectors = [apply_spec(spec, row) for row in eval_rows]
        spec_ms = _per_example_ms(lambda: [apply_spec(spec, row) for row in eval_rows], len(eval_rows))
        latency, weights = {}, {}
        for name, result in blessing["variants"].items():
            path = os.path.join(out_dir, result["path"])
            if path.endswith(".tflite"):
                predictor = Predictor(path, spec, use_edgetpu="no")
                latency[name] = _per_example_ms(lambda p=predictor: [p.scores(v) for v in vectors],
                                                len(vectors))
                weights[name] = _weight_bytes(path)
        serve = tf.saved_model.load(model_dir).signatures["serving_default"]
        raw_spec = {k: v for k, v in output.raw_feature_spec().items() if k != "species"}
        serialized = [tf.constant([to_example(r, raw_spec).SerializeToString()]) for r in eval_rows]
        latency["saved_model"] = _per_example_ms(
            lambda: [serve(examples=s) for s in serialized], len(serialized))
    body = _table(blessing, latency, weights, spec_ms, export_seconds, len(eval_rows))
    print(body)
    command = "python -m bench.edge" + (" --outputs <output_dir of a default run>" if args.outputs else "")
    write_section("edge", "Edge variants: size, latency, accuracy", command, body)
    return 0


def _per_example_ms(run, count: int) -> float:
    run()  # warm-up
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return 1000 * best / count


def _weight_bytes(path: str) -> int:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    return sum(len(b.data) for b in model.buffers if b.data is not None)


def _table(blessing, latency, weights, spec_ms, export_seconds, examples) -> str:
    float32 = blessing["variants"]["float32"]["bytes"]
    float32_weights = weights.get("float32") or 1
    lines = [
        f"Eval split: {examples} examples. SavedModel accuracy {blessing['reference_accuracy']:.3f}; "
        f"gate: at most {100 * blessing['max_accuracy_drop']:.1f} points below it. "
        f"Whole export (spec, 6 variants, readiness, parity): {export_seconds:.1f} s.",
        "",
        "| variant | file bytes | vs float32 .tflite | weight bytes | latency ms/example | "
        "accuracy | agreement | deployable |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in blessing["variants"].items():
        ratio = f"{100 * result['bytes'] / float32:.0f}%" if name in weights else "-"
        weight = f"{weights[name]} ({100 * weights[name] / float32_weights:.0f}%)" if name in weights else "-"
        ms = f"{latency[name]:.3f}" if name in latency else "-"
        lines.append(f"| {name} | {result['bytes']} | {ratio} | {weight} | {ms} | "
                     f"{result['accuracy']:.3f} | {result['agreement']:.3f} | "
                     f"{'yes' if result['deployable'] else 'no'} |")
    lines += [
        "",
        f"Preprocessing with the spec (`apply_spec`, numpy): {spec_ms:.3f} ms/example; add it to "
        "the TFLite latencies for the device path. The SavedModel latency is one `serving_default` "
        "call per example (tf.Example parsing and the Transform graph included).",
        "",
        "Reading the numbers: the classifier is tiny (a few hundred weights), so a .tflite file is "
        "mostly flatbuffer structure (op and tensor tables, names, signature), not weights. "
        "\"Weight bytes\" sums the constant buffers: int8 holds int8 weights and int32 biases; "
        "float16 halves the weights but adds Dequantize ops, so its file is no smaller; "
        "dynamic-range quantization skips tensors under 1024 elements, so it equals float32 here. "
        "So the target of int8 at ~30% of float32 is missed: int8 weight bytes come close (~36%), "
        "the file does not (~82%); a model with more weights would approach 25-30%. "
        "On this x86 CPU the int8 model is not faster per example: at this size the Python "
        "invoke and the (de)quantization of input and output dominate; the Edge TPU is "
        "where int8 pays. The export time includes loading the model and was measured while "
        "other jobs shared the 2 cores, so it is far above the ~20 s seen on a quieter machine.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))

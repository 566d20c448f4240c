"""Against the anchor: this template against TFX's own taxi template, on the same CSV and work.

    python -m bench anchor --runs 3

The anchor is `tfx template copy --model=taxi` from the installed TFX wheel, with its
components enabled the way TFX's own end-to-end test enables them (it uncomments every
`components.append(` in `pipeline/pipeline.py`; SchemaGen infers the schema). Its defaults
are the work: the wheel's taxi CSV (15,002 rows), 1000 training and 150 eval steps, no cache.

This template runs on the same rows, adapted as the README's "Adapting it to your data"
says: a temporary copy of the template whose `models/features.py` holds `bench/taxi/features.py`'s values,
whose curated schema is `bench/taxi/schema.pbtxt`, with the config `bench/taxi/config.yaml`
(the same steps, batch size and model size, caching off, edge export on as by default). Its
CSV is the taxi CSV with the label the taxi template derives (`big_tipper`: tips > 20% of the
fare) in place of the `tips` column, written to a temporary folder.

Runs alternate (anchor, this, anchor, this, ...), so both see the same load; each run is a
fresh output folder. It prints and writes to BENCHMARKS.md the medians of wall time, CPU time
and peak RSS (of the runner and its children), their ratios, and each component's seconds
from each side's ML Metadata.
"""

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
from typing import Dict, List, Optional

import yaml

from bench._measure import node_times, run_measured
from bench.report import write_section

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI_DIR = os.path.join(REPO_ROOT, "bench", "taxi")
PACKAGES = ("pipeline", "models", "runners", "serving", "edge")  # setup.py's top-level packages
LABEL = "big_tipper"
ROWS = ("start to first component", "CsvExampleGen", "StatisticsGen", "SchemaGen",
        "ImportSchemaGen", "ExampleValidator", "AnomaliesGate", "Transform", "Trainer",
        "Evaluator", "ServingModel", "Pusher", "EdgeExport", "other components",
        "after last component")


def taxi_csv() -> str:
    """The taxi CSV that `tfx template copy --model=taxi` copies out of the TFX wheel."""
    import importlib.util

    tfx_dir = importlib.util.find_spec("tfx").submodule_search_locations[0]
    return os.path.join(tfx_dir, "examples", "chicago_taxi_pipeline", "data", "simple", "data.csv")


def big_tipper(fare: str, tips: str) -> str:
    """The taxi template's label for one row, "1" or "0", computed as its preprocessing_fn does.

    It fills a blank fare or tip with 0, then tests tips > fare * 0.2 in float32.
    """
    import numpy as np

    fare32 = np.float32(float(fare) if fare else 0.0)
    tips32 = np.float32(float(tips) if tips else 0.0)
    if np.isnan(fare32):
        return "0"
    return "1" if tips32 > fare32 * np.float32(0.2) else "0"


def prepare_csv(source: str, destination: str) -> int:
    """Writes `source` without its `tips` column and with `big_tipper` last, rows in order.

    Returns the number of rows written.
    """
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    with open(source, newline="") as f_in, open(destination, "w", newline="") as f_out:
        reader = csv.DictReader(f_in)
        columns = [c for c in reader.fieldnames if c != "tips"] + [LABEL]
        writer = csv.DictWriter(f_out, columns)
        writer.writeheader()
        rows = 0
        for row in reader:
            row[LABEL] = big_tipper(row["fare"], row.pop("tips"))
            writer.writerow(row)
            rows += 1
    return rows


def load_bench_config(work_dir: str, data_root: str, schema_path: str) -> Dict:
    """`bench/taxi/config.yaml` with the run's own folders."""
    with open(os.path.join(TAXI_DIR, "config.yaml")) as f:
        config = yaml.safe_load(f)
    config.update(output_dir=os.path.join(work_dir, "outputs"), data_root=data_root,
                  schema_path=schema_path)
    return config


def adapt_template(project: str) -> str:
    """A copy of this template in `project`, adapted to the taxi data; returns its schema path.

    As a user would: every package and `setup.py`, then `models/features.py` with the taxi values
    (`features_source`) and `bench/taxi/schema.pbtxt` as the curated schema.
    """
    for package in PACKAGES + ("schema",):
        shutil.copytree(os.path.join(REPO_ROOT, package), os.path.join(project, package),
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(REPO_ROOT, "setup.py"), project)
    with open(os.path.join(project, "models", "features.py"), "w") as f:
        f.write(features_source())
    schema_path = os.path.join(project, "schema", "schema.pbtxt")
    shutil.copy(os.path.join(TAXI_DIR, "schema.pbtxt"), schema_path)
    return schema_path


def features_source() -> str:
    """The template's `models/features.py` with the values of `bench/taxi/features.py` set.

    The taxi file's assignments come after the template's, so they win, while the template's
    helpers and the constants the taxi data has no reason to change stay the template's own.
    """
    with open(os.path.join(REPO_ROOT, "models", "features.py")) as f:
        template = f.read()
    with open(os.path.join(TAXI_DIR, "features.py")) as f:
        taxi = f.read()
    return f"{template}\n\n# ---- The taxi data's values (bench/taxi/features.py) ----\n{taxi}"


def copy_anchor(project: str) -> None:
    """`tfx template copy --model=taxi` into `project`, with every component enabled.

    TFX's e2e test (tfx/experimental/templates/taxi/e2e_tests/local_e2e_test.py) turns the
    one-component pipeline into the full one by uncommenting `components.append(`.
    """
    from tfx.tools.cli import labels
    from tfx.tools.cli.handler import template_handler

    template_handler.copy_template({labels.MODEL: "taxi", labels.PIPELINE_NAME: "anchor",
                                    labels.DESTINATION_PATH: project})
    path = os.path.join(project, "pipeline", "pipeline.py")
    with open(path) as f:
        text = f.read()
    enabled = text.replace("# components.append(", "components.append(")
    if enabled.count("components.append(") < 8:
        raise RuntimeError(f"The taxi template's {path} did not have its components commented "
                           "out as TFX 1.16's does; the bench cannot enable them.")
    with open(path, "w") as f:
        f.write(enabled)


def run_anchor(project: str, work_dir: str) -> Dict:
    """One run of the anchor's local_runner.py; its outputs go to `work_dir` (its OUTPUT_DIR '.')."""
    run = run_measured([sys.executable, os.path.join(project, "local_runner.py")], cwd=work_dir,
                       log_path=os.path.join(work_dir, "run.log"))
    if run.returncode != 0:
        raise RuntimeError(f"The anchor's run failed; see {work_dir}/run.log")
    return _result(run, os.path.join(work_dir, "tfx_metadata", "anchor", "metadata.db"))


def run_this(project: str, work_dir: str, config: Dict) -> Dict:
    """One run of the adapted template's local runner, from its project folder."""
    config_path = os.path.join(work_dir, "config.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(config, f)
    # `python -m` from the project folder imports its adapted `models`, not this checkout's.
    env = {**os.environ, "TFXT_CONFIG": config_path}
    run = run_measured([sys.executable, "-m", "runners.local_runner"], cwd=project,
                       log_path=os.path.join(work_dir, "run.log"), env=env)
    if run.returncode != 0:
        raise RuntimeError(f"This template's run failed (exit {run.returncode}); see {work_dir}/run.log")
    return _result(run, os.path.join(config["output_dir"], "metadata", config["pipeline_name"],
                                     "metadata.db"))


def _result(run, metadata_path: str) -> Dict:
    nodes = node_times(metadata_path)
    seconds: Dict[str, float] = {}
    for node in nodes:
        key = node.node_id if node.node_id in ROWS else "other components"
        seconds[key] = seconds.get(key, 0.0) + node.seconds
    seconds["start to first component"] = nodes[0].started_at - run.started_at
    seconds["after last component"] = run.ended_at - max(n.ended_at for n in nodes)
    return {"seconds": run.seconds, "cpu_seconds": run.cpu_seconds,
            "peak_rss_mib": run.peak_rss_mib, "nodes": seconds}


def render(results: Dict[str, List[Dict]], load: str, rows: int) -> str:
    """Medians of each side, their ratios, and the per-component table."""
    def median(side, key):
        return statistics.median(r[key] for r in results[side])

    def node_median(side, node):
        return statistics.median(r["nodes"].get(node, 0.0) for r in results[side])

    runs = len(results["this"])
    lines = [f"The taxi CSV of the TFX wheel, {rows:,} rows; 1000 training and 150 eval steps, "
             f"caching off; {runs} runs each, interleaved (anchor, this, ...). Load average "
             f"(1, 5, 15 min) before and after: {load}.", "",
             "| | wall s | CPU s | peak RSS MiB |", "|---|---:|---:|---:|"]
    for side, label in (("anchor", "anchor: TFX taxi template"), ("this", "this template, edge export on")):
        lines.append(f"| {label} (median) | {median(side, 'seconds'):.1f} | "
                     f"{median(side, 'cpu_seconds'):.1f} | {median(side, 'peak_rss_mib'):.0f} |")
    ratio = {key: median("this", key) / median("anchor", key)
             for key in ("seconds", "cpu_seconds", "peak_rss_mib")}
    lines.append(f"| **this / anchor** | **{ratio['seconds']:.2f}x** | {ratio['cpu_seconds']:.2f}x | "
                 f"{ratio['peak_rss_mib']:.2f}x |")
    lines += ["", "Each run, wall s (anchor / this): " + ", ".join(
        f"{a['seconds']:.0f} / {t['seconds']:.0f}" for a, t in zip(results["anchor"], results["this"]))]
    lines += ["", "Per component, median seconds (from each side's ML Metadata: an execution's "
              "registration to its result; '-' where that side has no such component):", "",
              "| component | anchor | this | this - anchor |", "|---|---:|---:|---:|"]
    for node in ROWS:
        present = {side: any(node in r["nodes"] for r in results[side]) for side in results}
        if not any(present.values()):
            continue
        cells = {side: node_median(side, node) for side in results}
        text = {side: f"{cells[side]:.1f}" if present[side] else "-" for side in results}
        lines.append(f"| {node} | {text['anchor']} | {text['this']} | "
                     f"{cells['this'] - cells['anchor']:+.1f} |")
    lines += ["", f"Goal 1 (wall time at most 0.67x the anchor's): "
              f"**{'met' if ratio['seconds'] <= 0.67 else 'not met'}** ({ratio['seconds']:.2f}x)."]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each side, interleaved")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv or [])
    root = tempfile.mkdtemp(prefix="bench-anchor-")
    print(f"  work folder: {root}", flush=True)
    data_root = os.path.join(root, "data")
    rows = prepare_csv(taxi_csv(), os.path.join(data_root, "span-1", "taxi.csv"))
    anchor_project, this_project = os.path.join(root, "anchor"), os.path.join(root, "this")
    copy_anchor(anchor_project)
    schema_path = adapt_template(this_project)
    load_before = os.getloadavg()
    results: Dict[str, List[Dict]] = {"anchor": [], "this": []}
    for round_index in range(args.runs):
        for side in ("anchor", "this"):
            work_dir = os.path.join(root, f"{side}-{round_index + 1}")
            os.makedirs(work_dir)
            result = (run_anchor(anchor_project, work_dir) if side == "anchor" else
                      run_this(this_project, work_dir, load_bench_config(work_dir, data_root, schema_path)))
            results[side].append(result)
            print(f"  round {round_index + 1} {side}: {result['seconds']:.0f} s wall, "
                  f"{result['cpu_seconds']:.0f} s CPU, load {os.getloadavg()[0]:.1f}", flush=True)
    load = " / ".join(", ".join(f"{x:.1f}" for x in avg) for avg in (load_before, os.getloadavg()))
    body = render(results, load, rows)
    print(body)
    write_section("anchor", "Against the anchor: TFX's taxi template on the same CSV",
                  f"python -m bench anchor --runs {args.runs}", body)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

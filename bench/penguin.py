"""Small-data speed: the default pipeline on the bundled penguin data, this checkout against another.

    python -m bench penguin --baseline /path/to/other/checkout --runs 2
    git archive <commit> | tar -x -C /tmp/baseline   # a baseline checkout of an older commit

For each round, and each checkout in turn (A B A B ..., so both see the same load), it
runs that checkout's `runners/local_runner.py` (with this environment's packages, so both
sides must share the lock) into a fresh output
folder (a first run: nothing cached), then runs it again unchanged in the same folder
(the cached re-run). A checkout with the unchanged-run fast path (`pipeline/ops/unchanged.py`)
runs twice more: a third run (a real one: the second executed ModelDecay on the model the first
pushed, so it was not recorded as having nothing to do) and a fourth, which the fast path serves.
It records wall time, CPU time and peak RSS of the runner and its
children (`bench._measure.run_measured`), the start-up (seconds from the command to the first
component's "running" line), and each component's seconds from ML Metadata.
Without `--baseline` only this checkout runs. Results go to BENCHMARKS.md, with the
load average before and after, since the machine may be shared.
"""

import argparse
import os
import statistics
import sys
import tempfile
from typing import Dict, List

import yaml

from bench._measure import run_measured
from bench.report import write_section

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENTS = ("CsvExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator", "EdgeExport")


def run_once(checkout: str, work_dir: str) -> Dict:
    """One run of `checkout`'s local runner writing under `work_dir`; returns its measurements."""
    config_path = os.path.join(work_dir, "config.yaml")
    if not os.path.exists(config_path):
        with open(config_path, "w") as f:
            yaml.safe_dump({"output_dir": os.path.join(work_dir, "outputs"),
                            "data_root": os.path.join(checkout, "data", "penguins"),
                            "schema_path": os.path.join(checkout, "schema", "schema.pbtxt")}, f)
    # This environment's packages; the checkout's code first on the path, ahead of the
    # editable install of this one.
    env = {**os.environ, "TFXT_CONFIG": config_path, "PYTHONPATH": checkout, "PYTHONUNBUFFERED": "1"}
    seen = {"startup": None, "served_unchanged": False}

    def on_line(line: str, seconds: float) -> None:
        if seen["startup"] is None and " running ..." in line:
            seen["startup"] = seconds
        seen["served_unchanged"] = seen["served_unchanged"] or line.startswith("Nothing new since run")

    run = run_measured([sys.executable, os.path.join(checkout, "runners", "local_runner.py")],
                       cwd=work_dir, log_path=os.path.join(work_dir, "run.log"), env=env,
                       on_line=on_line)
    if run.returncode != 0:
        raise RuntimeError(f"The run of {checkout} failed; see {work_dir}/run.log")
    from pipeline.config import load_config
    from pipeline.ops.summary import summarize

    summary = summarize(load_config(config_path, base_dir=work_dir))
    return {"seconds": run.seconds, "cpu_seconds": run.cpu_seconds, "startup_seconds": seen["startup"],
            "served_unchanged": seen["served_unchanged"], "peak_rss_mib": run.peak_rss_mib,
            "nodes": {n.node_id: n.seconds for n in summary.nodes},
            "states": {n.node_id: n.state for n in summary.nodes}}


def render(results: Dict[str, List[Dict]], labels: Dict[str, str], load: str) -> str:
    """Median per checkout and kind of run, and the ratio of this checkout to the baseline."""
    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    def startup(runs):
        values = [r["startup_seconds"] for r in runs if r.get("startup_seconds") is not None]
        return f"{statistics.median(values):.1f}" if values else "-"

    lines = [f"Load average (1, 5, 15 min) before and after: {load}", "",
             "| checkout | run | n | wall s | CPU s | start-up s | peak RSS MiB | "
             + " | ".join(COMPONENTS) + " |",
             "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(COMPONENTS)]
    for key, runs in results.items():
        name, kind = key.split("/")
        cells = [f"{statistics.median(r['nodes'].get(c, 0) for r in runs):.1f}" for c in COMPONENTS]
        if all(r.get("served_unchanged") for r in runs):
            kind, cells = f"{kind} (fast path)", ["-"] * len(COMPONENTS)
        lines.append(f"| {labels[name]} | {kind} | {len(runs)} | {median(runs, 'seconds'):.1f} | "
                     f"{median(runs, 'cpu_seconds'):.1f} | {startup(runs)} | "
                     f"{median(runs, 'peak_rss_mib'):.0f} | " + " | ".join(cells) + " |")
    lines.append("")
    if "baseline/first" in results:
        for kind in ("first", "rerun"):
            this, base = results[f"this/{kind}"], results[f"baseline/{kind}"]
            lines.append(f"- {kind} run, this / baseline (medians): wall "
                         f"{median(this, 'seconds') / median(base, 'seconds'):.2f}x, "
                         f"CPU {median(this, 'cpu_seconds') / median(base, 'cpu_seconds'):.2f}x, "
                         f"peak RSS {median(this, 'peak_rss_mib') / median(base, 'peak_rss_mib'):.2f}x, "
                         f"start-up {startup(this)} s vs {startup(base)} s")
    for key, runs in results.items():
        name, kind = key.split("/")
        if kind == "first":
            continue
        first = results[f"{name}/first"]
        executed = [node for node, state in runs[-1]["states"].items() if state == "COMPLETE"]
        what = ("served by the fast path" if runs[-1].get("served_unchanged")
                else f"nodes executed in the last one: {', '.join(executed) or 'none'}")
        lines.append(f"- {labels[name]}: {kind} / first run (medians): wall "
                     f"{median(runs, 'seconds') / median(first, 'seconds'):.3f}x, CPU "
                     f"{median(runs, 'cpu_seconds') / median(first, 'cpu_seconds'):.3f}x; {what}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another checkout of this template (with its .venv)")
    parser.add_argument("--runs", type=int, default=2, help="rounds; each runs every checkout once")
    parser.add_argument("--section", default="penguin",
                        help="the BENCHMARKS.md section to write (another keeps the default one)")
    args = parser.parse_args(argv)
    checkouts = {"this": REPO_ROOT, **({"baseline": os.path.abspath(args.baseline)} if args.baseline else {})}
    labels = {name: f"{name} ({os.path.basename(path)})" for name, path in checkouts.items()}
    load_before = os.getloadavg()
    results: Dict[str, List[Dict]] = {}
    for round_index in range(args.runs):
        for name, checkout in checkouts.items():
            work_dir = tempfile.mkdtemp(prefix=f"bench-penguin-{name}-")
            kinds = ("first", "rerun")
            if os.path.exists(os.path.join(checkout, "pipeline", "ops", "unchanged.py")):
                kinds += ("third run", "fourth run")
            for kind in kinds:
                result = run_once(checkout, work_dir)
                results.setdefault(f"{name}/{kind}", []).append(result)
                print(f"round {round_index + 1} {name} {kind}: {result['seconds']:.1f} s wall, "
                      f"{result['cpu_seconds']:.1f} s CPU, start-up {result['startup_seconds']} s, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    load = " / ".join(", ".join(f"{x:.1f}" for x in avg) for avg in (load_before, os.getloadavg()))
    body = render(results, labels, load)
    print(body)
    command = "python -m bench penguin" + (f" --baseline {args.baseline}" if args.baseline else "") + \
        f" --runs {args.runs}" + (f" --section {args.section}" if args.section != "penguin" else "")
    title = "Small data: the default pipeline on the penguin data, first and cached re-run"
    write_section(args.section, title if args.section == "penguin" else f"{title} ({args.section})",
                  command, body)

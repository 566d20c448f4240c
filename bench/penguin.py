"""Small-data speed: the default pipeline on the bundled penguin data, this checkout against another.

    python -m bench penguin --baseline /path/to/other/checkout --runs 2
    git worktree add --detach /tmp/baseline <commit>   # a baseline checkout of an older commit

For each round, and each checkout in turn (A B A B ..., so both see the same load), it
runs that checkout's `runners/local_runner.py` (with this environment's packages, so both
sides must share the lock) into a fresh output
folder (a first run: nothing cached), then runs it again unchanged in the same folder
(the cached re-run). It records wall time, CPU time and peak RSS of the runner and its
children (`bench._measure.run_measured`), and each component's seconds from ML Metadata.
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
    env = {**os.environ, "TFXT_CONFIG": config_path, "PYTHONPATH": checkout}
    run = run_measured([sys.executable, os.path.join(checkout, "runners", "local_runner.py")],
                       cwd=work_dir, log_path=os.path.join(work_dir, "run.log"), env=env)
    if run.returncode != 0:
        raise RuntimeError(f"The run of {checkout} failed; see {work_dir}/run.log")
    from pipeline.config import load_config
    from pipeline.ops.summary import summarize

    summary = summarize(load_config(config_path, base_dir=work_dir))
    return {"seconds": run.seconds, "cpu_seconds": run.cpu_seconds,
            "peak_rss_mib": run.peak_rss_mib,
            "nodes": {n.node_id: n.seconds for n in summary.nodes},
            "states": {n.node_id: n.state for n in summary.nodes}}


def render(results: Dict[str, List[Dict]], labels: Dict[str, str], load: str) -> str:
    """Median per checkout and kind of run, and the ratio of this checkout to the baseline."""
    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    lines = [f"Load average (1, 5, 15 min) before and after: {load}", "",
             "| checkout | run | n | wall s | CPU s | peak RSS MiB | " + " | ".join(COMPONENTS) + " |",
             "|---|---|---:|---:|---:|---:|" + "---:|" * len(COMPONENTS)]
    for key, runs in results.items():
        name, kind = key.split("/")
        cells = [f"{statistics.median(r['nodes'].get(c, 0) for r in runs):.1f}" for c in COMPONENTS]
        lines.append(f"| {labels[name]} | {kind} | {len(runs)} | {median(runs, 'seconds'):.0f} | "
                     f"{median(runs, 'cpu_seconds'):.0f} | {median(runs, 'peak_rss_mib'):.0f} | "
                     + " | ".join(cells) + " |")
    if "baseline/first" in results:
        lines.append("")
        for kind in ("first", "rerun"):
            this, base = results[f"this/{kind}"], results[f"baseline/{kind}"]
            lines.append(f"- {kind} run, this / baseline (medians): wall "
                         f"{median(this, 'seconds') / median(base, 'seconds'):.2f}x, "
                         f"CPU {median(this, 'cpu_seconds') / median(base, 'cpu_seconds'):.2f}x, "
                         f"peak RSS {median(this, 'peak_rss_mib') / median(base, 'peak_rss_mib'):.2f}x")
    for name in labels:
        first, rerun = results[f"{name}/first"], results[f"{name}/rerun"]
        executed = [node for node, state in rerun[-1]["states"].items() if state == "COMPLETE"]
        lines.append(f"- {labels[name]}: cached re-run / first run (medians): wall "
                     f"{median(rerun, 'seconds') / median(first, 'seconds'):.2f}x; nodes executed in the "
                     f"last re-run: {', '.join(executed) or 'none'}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another checkout of this template (with its .venv)")
    parser.add_argument("--runs", type=int, default=2, help="rounds; each runs every checkout once")
    args = parser.parse_args(argv)
    checkouts = {"this": REPO_ROOT, **({"baseline": os.path.abspath(args.baseline)} if args.baseline else {})}
    labels = {name: f"{name} ({os.path.basename(path)})" for name, path in checkouts.items()}
    load_before = os.getloadavg()
    results: Dict[str, List[Dict]] = {}
    for round_index in range(args.runs):
        for name, checkout in checkouts.items():
            work_dir = tempfile.mkdtemp(prefix=f"bench-penguin-{name}-")
            for kind in ("first", "rerun"):
                result = run_once(checkout, work_dir)
                results.setdefault(f"{name}/{kind}", []).append(result)
                print(f"round {round_index + 1} {name} {kind}: {result['seconds']:.0f} s wall, "
                      f"{result['cpu_seconds']:.0f} s CPU", flush=True)
    load = " / ".join(", ".join(f"{x:.1f}" for x in avg) for avg in (load_before, os.getloadavg()))
    body = render(results, labels, load)
    print(body)
    command = "python -m bench penguin" + (f" --baseline {args.baseline}" if args.baseline else "") + \
        f" --runs {args.runs}"
    write_section("penguin", "Small data: the default pipeline on the penguin data, first and cached re-run",
                  command, body)

"""Start-up: seconds from the command to the first component's "running" line of a local run,
this checkout against another (optional), with `import tensorflow` alone as the floor, each in a
fresh process, interleaved (A B C A B C ...).

    python -m bench startup --rounds 5
    python -m bench startup --baseline /tmp/baseline   # another checkout

Each run is `runners/local_runner.py --force` on an empty output folder (so nothing is cached
and the fast path of an unchanged run does not answer), stopped at its first " running ..."
line. CPU is the process's user + system time at that line, which a shared machine's load moves
far less than wall time. The load average is recorded before every run.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

from bench.report import write_section

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPORT_TENSORFLOW = "import tensorflow"
DEADLINE_SECONDS = 300


def to_first_component(checkout: str) -> Dict:
    """Runs the checkout's local runner until its first component starts; then stops it."""
    import psutil

    output_dir = tempfile.mkdtemp(prefix="bench-startup-")
    config_path = os.path.join(output_dir, "config.json")
    with open(config_path, "w") as f:
        json.dump({"output_dir": output_dir}, f)
    # This environment's packages; the checkout's code first on the path, ahead of the editable
    # install of this one (as bench/penguin.py runs a baseline).
    env = dict(os.environ, TFXT_CONFIG=config_path, PYTHONUNBUFFERED="1", PYTHONPATH=checkout)
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "runners/local_runner.py", "--force"], cwd=checkout,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = cpu = None
    deadline = threading.Timer(DEADLINE_SECONDS, process.kill)  # a run stuck before any component
    deadline.start()
    try:
        for line in process.stdout:
            if " running ..." in line:
                seconds = time.monotonic() - started
                times = psutil.Process(process.pid).cpu_times()
                cpu = times.user + times.system
                break
    finally:
        deadline.cancel()
        process.kill()
        process.wait()
        shutil.rmtree(output_dir, ignore_errors=True)
    if seconds is None:
        raise RuntimeError(f"{checkout}: no component started (the run ended, or took over "
                           f"{DEADLINE_SECONDS} s); see its output with `python runners/local_runner.py`")
    return {"seconds": seconds, "cpu_seconds": cpu}


def import_tensorflow() -> Dict:
    """`import tensorflow` alone in a fresh interpreter (with this template's Keras setting)."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", "import resource, tensorflow; u = resource."
                             "getrusage(resource.RUSAGE_SELF); print(u.ru_utime + u.ru_stime)"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            check=True)
    return {"seconds": time.monotonic() - started, "cpu_seconds": float(result.stdout.split()[-1])}


def render(results: Dict[str, List[Dict]]) -> str:
    lines = ["| what | round | load (1 min) | seconds to the first component | CPU s |",
             "|---|---:|---:|---:|---:|"]
    for name, runs in results.items():
        lines += [f"| {name} | {i + 1} | {r['load']:.1f} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} |"
                  for i, r in enumerate(runs)]
    lines.append("")
    medians = {name: (statistics.median(r["seconds"] for r in runs),
                      statistics.median(r["cpu_seconds"] for r in runs)) for name, runs in results.items()}
    for name, (seconds, cpu) in medians.items():
        lines.append(f"- {name}: median {seconds:.1f} s wall, {cpu:.1f} s CPU")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another checkout of this template")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    variants = {"this checkout": lambda: to_first_component(REPO_ROOT)}
    if args.baseline:
        baseline = os.path.abspath(args.baseline)
        variants[f"baseline ({os.path.basename(baseline)})"] = lambda: to_first_component(baseline)
    variants[IMPORT_TENSORFLOW + " alone"] = import_tensorflow
    results: Dict[str, List[Dict]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, measure in variants.items():
            load = os.getloadavg()[0]
            result = dict(measure(), load=load)
            results[name].append(result)
            print(f"round {round_index + 1} {name}: {result['seconds']:.1f} s, "
                  f"{result['cpu_seconds']:.1f} s CPU, load {load:.1f}", flush=True)
    body = render(results)
    print(body)
    command = "python -m bench startup" + (f" --baseline {args.baseline}" if args.baseline else "") + \
        f" --rounds {args.rounds}"
    write_section("first-component", "Start-up: from the command to the first component", command, body)


if __name__ == "__main__":
    main()

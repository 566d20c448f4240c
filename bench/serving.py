"""Serving latency and throughput: REST vs gRPC vs the in-process model call, interleaved.

`python -m bench serving [--serving-model-dir DIR] [--rounds N]` measures
single-row predictions on `serving_raw`:

- in-process: `LoadedVersion.predict` on prebuilt columns, in this process (the limit);
- REST and gRPC: the template's clients against the local server, which runs in
  a separate process (so client and server do not share one GIL), over loopback,
  writing the request log as `make serve` does.

The three paths are measured interleaved: each round runs a block of every
path in turn, first one client, then 8 concurrent clients, so that a change in
the machine's load hits all paths alike. The load average is recorded with
every round. It writes the medians over rounds, their differences and ratios
to the in-process call, and the goals of issue 14, into BENCHMARKS.md. DIR
defaults to the serving_model_dir of the config in $TFXT_CONFIG (else the
default config), so `make bench` measures the last pushed model.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List

ROW = {"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5,
       "flipper_length_mm": 215, "body_mass_g": 5000, "sex": "female"}
COMMAND = "python -m bench serving"
PATHS = ("in-process", "REST", "gRPC")
CONCURRENCY = 8


def serve_in_subprocess(model_name: str, base_path: str, request_log: str) -> None:
    """Child process: serves `base_path` on free ports, prints them, runs until stdin closes."""
    from serving.model_store import ModelStore
    from serving.request_log import RequestLog
    from serving.server import LocalServer

    server = LocalServer(ModelStore(model_name=model_name, base_path=base_path), rest_port=0, grpc_port=0,
                         grpc_workers=32, request_log=RequestLog(request_log)).start()
    print(json.dumps({"rest": server.rest_port, "grpc": server.grpc_port}), flush=True)
    sys.stdin.read()
    server.stop()


def latencies(call: Callable[[], object], requests: int) -> List[float]:
    """Seconds per call of `call`, one client."""
    result = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        result.append(time.perf_counter() - started)
    return result


def throughput(call: Callable[[], object], concurrency: int, requests: int) -> float:
    """Calls per second of `call` from `concurrency` threads sharing `requests` calls."""
    per_thread = max(requests // concurrency, 1)

    def worker():
        for _ in range(per_thread):
            call()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return per_thread * concurrency / (time.perf_counter() - started)


def run_rounds(calls: Dict[str, Callable[[], object]], rounds: int, requests: int) -> List[Dict]:
    """Per round: p50 and p99 (ms, one client) and throughput (8 clients) of every path, interleaved."""
    for call in calls.values():
        for _ in range(20):
            call()
    results = []
    for round_index in range(rounds):
        row = {"round": round_index + 1, "load": os.getloadavg()[0]}
        for name, call in calls.items():
            seconds = sorted(latencies(call, requests))
            row[name] = {"p50": statistics.median(seconds) * 1000,
                         "p99": seconds[min(int(len(seconds) * 0.99), len(seconds) - 1)] * 1000}
        for name, call in calls.items():
            row[name]["throughput"] = throughput(call, CONCURRENCY, requests)
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def main(argv) -> None:
    parser = argparse.ArgumentParser(prog=COMMAND)
    parser.add_argument("--serving-model-dir", default=None)
    parser.add_argument("--model-name", default="penguin")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="requests per path per round")
    args = parser.parse_args(argv)
    base = args.serving_model_dir
    if base is None:
        from pipeline.config import load_config

        base = load_config(os.environ.get("TFXT_CONFIG"), require_schema=False).serving_model_dir
    from serving.versions import ready_versions

    if not ready_versions(base):
        # Not an exception: `python -m bench` goes on with the other topics.
        print(f"Skipped: no pushed model in {base}; run the pipeline first (make run).")
        return

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as logs:
        request_log = os.path.join(logs, "requests.jsonl")
        child = subprocess.Popen(
            [sys.executable, "-c", f"from bench.serving import serve_in_subprocess; "
                                   f"serve_in_subprocess({args.model_name!r}, {base!r}, {request_log!r})"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ports = json.loads(child.stdout.readline())
            load_before = os.getloadavg()
            results = run_rounds(_calls(args.model_name, base, ports), args.rounds, args.requests)
            load_after = os.getloadavg()
        finally:
            child.stdin.close()
            child.wait(timeout=60)
        logged = sum(1 for _ in open(request_log)) if os.path.exists(request_log) else 0
    write(results, args.requests, load_before, load_after, logged)


def _calls(model_name: str, base: str, ports: Dict[str, int]) -> Dict[str, Callable[[], object]]:
    from serving import payloads
    from serving.client import GrpcClient, RestClient
    from serving.inference import LoadedVersion
    from serving.versions import ready_versions

    version = ready_versions(base)[-1]
    loaded = LoadedVersion.load(model_name, version, os.path.join(base, str(version)))
    columns = payloads.raw_columns([ROW])
    rest = RestClient(model_name, port=ports["rest"])
    rpc = GrpcClient(model_name, port=ports["grpc"])
    return {
        "in-process": lambda: loaded.predict("serving_raw", columns),
        "REST": lambda: rest.predict([ROW]),
        "gRPC": lambda: rpc.predict([ROW]),
    }


def summarize(results: List[Dict]) -> Dict[str, Dict[str, float]]:
    """Medians over rounds of each path's p50, p99 and throughput."""
    return {name: {key: statistics.median(r[name][key] for r in results)
                   for key in ("p50", "p99", "throughput")} for name in PATHS}


def write(results: List[Dict], requests: int, load_before, load_after, logged: int) -> None:
    from bench.report import write_section

    summary = summarize(results)
    base = summary["in-process"]
    lines = ["| path | p50 ms | p99 ms | p50 minus in-process | requests/s, 8 clients | "
             "throughput vs in-process |", "|---|---:|---:|---:|---:|---:|"]
    for name in PATHS:
        r = summary[name]
        lines.append(f"| {name} | {r['p50']:.2f} | {r['p99']:.2f} | {r['p50'] - base['p50']:+.2f} ms | "
                     f"{r['throughput']:.0f} | {r['throughput'] / base['throughput']:.2f}x |")
    goals = [
        ("gRPC p50 <= in-process + 1 ms", summary["gRPC"]["p50"] - base["p50"] <= 1.0),
        ("REST p50 <= in-process + 2 ms", summary["REST"]["p50"] - base["p50"] <= 2.0),
        ("gRPC no slower than REST (p50)", summary["gRPC"]["p50"] <= summary["REST"]["p50"]),
        (f"REST throughput with {CONCURRENCY} clients >= 0.5x in-process",
         summary["REST"]["throughput"] >= 0.5 * base["throughput"]),
        (f"gRPC throughput with {CONCURRENCY} clients >= 0.5x in-process",
         summary["gRPC"]["throughput"] >= 0.5 * base["throughput"]),
    ]
    rounds = ["| round | load average (1 min) | in-process p50 | REST p50 | gRPC p50 | in-process/s | "
              "REST/s | gRPC/s |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rounds += [f"| {r['round']} | {r['load']:.1f} | {r['in-process']['p50']:.2f} | {r['REST']['p50']:.2f} | "
               f"{r['gRPC']['p50']:.2f} | {r['in-process']['throughput']:.0f} | "
               f"{r['REST']['throughput']:.0f} | {r['gRPC']['throughput']:.0f} |" for r in results]
    body = (
        f"Single-row `serving_raw` predictions. {len(results)} rounds; in each, every path runs "
        f"{requests} requests from one client (latency), then {requests} from {CONCURRENCY} concurrent "
        "clients (throughput), one path after the other, so that the machine's load hits all paths "
        "alike. The table holds the medians over rounds. REST and gRPC go through `serving.client` to "
        "the local server (`serving.server`) in another process over loopback, with the request log on, "
        f"as `make serve` runs it ({logged} lines logged); in-process is the model call alone, the limit. "
        f"Load average (1, 5, 15 min): {_load(load_before)} before, {_load(load_after)} after, on "
        f"{os.cpu_count()} cores shared with other work, so absolute numbers are inflated; compare the "
        "differences and ratios, which come from the same rounds. The local server is not TF Serving: "
        "its numbers say what the API layers cost here, not what `tensorflow_model_server` would do.\n\n"
        + "\n".join(lines) + "\n\nGoals (issue 14): "
        + "; ".join(f"{goal}: {'met' if met else 'NOT met'}" for goal, met in goals)
        + ".\n\nPer round:\n\n" + "\n".join(rounds))
    write_section("serving", "Serving: REST vs gRPC vs in-process", COMMAND, body)
    print(body)


def _load(load) -> str:
    return ", ".join(f"{x:.1f}" for x in load)

"""Serving latency and throughput: REST vs gRPC vs the in-process model call.

`python -m bench serving [--serving-model-dir DIR]` measures single-row
predictions on `serving_raw` at concurrency 1 and 16:

- in-process: `LoadedVersion.predict` on prebuilt columns, in this process (the limit);
- REST and gRPC: the template's clients against the local server, which runs in
  a separate process (so client and server do not share one GIL), over loopback.

It writes p50/p99 latency, throughput and their ratios to the in-process call
into BENCHMARKS.md. DIR defaults to the serving_model_dir of the config in
$TFXT_CONFIG (else the default config), so `make bench` measures the last pushed model.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List

ROW = {"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5,
       "flipper_length_mm": 215, "body_mass_g": 5000, "sex": "female"}
COMMAND = "python -m bench serving"


def serve_in_subprocess(model_name: str, base_path: str) -> None:
    """Child process: serves `base_path` on free ports, prints them, runs until stdin closes."""
    from serving.model_store import ModelStore
    from serving.server import LocalServer

    server = LocalServer(ModelStore(model_name=model_name, base_path=base_path), rest_port=0, grpc_port=0,
                         grpc_workers=32).start()
    print(json.dumps({"rest": server.rest_port, "grpc": server.grpc_port}), flush=True)
    sys.stdin.read()
    server.stop()


def measure(call: Callable[[], object], concurrency: int, requests: int) -> Dict[str, float]:
    """p50/p99 latency (ms) and throughput (requests/s) of `call` from `concurrency` threads."""
    for _ in range(10):
        call()
    latencies: List[float] = []
    lock = threading.Lock()
    per_thread = max(requests // concurrency, 1)

    def worker():
        mine = []
        for _ in range(per_thread):
            started = time.perf_counter()
            call()
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"p50": statistics.median(latencies) * 1000,
            "p99": latencies[min(int(len(latencies) * 0.99), len(latencies) - 1)] * 1000,
            "throughput": len(latencies) / elapsed}


def main(argv) -> None:
    parser = argparse.ArgumentParser(prog=COMMAND)
    parser.add_argument("--serving-model-dir", default=None)
    parser.add_argument("--model-name", default="penguin")
    parser.add_argument("--requests", type=int, default=400)
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

    child = subprocess.Popen(
        [sys.executable, "-c", f"from bench.serving import serve_in_subprocess; "
                               f"serve_in_subprocess({args.model_name!r}, {base!r})"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ports = json.loads(child.stdout.readline())
        results = run_all(args.model_name, base, ports, args.requests)
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    write(results, args.requests)


def run_all(model_name: str, base: str, ports: Dict[str, int], requests: int):
    from serving import payloads
    from serving.client import GrpcClient, RestClient
    from serving.inference import LoadedVersion
    from serving.versions import ready_versions

    version = ready_versions(base)[-1]
    loaded = LoadedVersion.load(model_name, version, os.path.join(base, str(version)))
    columns = payloads.raw_columns([ROW])
    rest = RestClient(model_name, port=ports["rest"])
    rpc = GrpcClient(model_name, port=ports["grpc"])
    calls = {
        "in-process": lambda: loaded.predict("serving_raw", columns),
        "REST": lambda: rest.predict([ROW]),
        "gRPC": lambda: rpc.predict([ROW]),
    }
    return {(name, concurrency): measure(call, concurrency, requests)
            for concurrency in (1, 16) for name, call in calls.items()}


def write(results, requests: int) -> None:
    from bench.report import write_section

    lines = ["| path | concurrency | p50 ms | p99 ms | requests/s | p50 vs in-process | "
             "throughput vs in-process |", "|---|---|---|---|---|---|---|"]
    for (name, concurrency), r in results.items():
        base = results[("in-process", concurrency)]
        lines.append(f"| {name} | {concurrency} | {r['p50']:.2f} | {r['p99']:.2f} | "
                     f"{r['throughput']:.0f} | {r['p50'] / base['p50']:.1f}x | "
                     f"{r['throughput'] / base['throughput']:.2f}x |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    body = (f"Single-row `serving_raw` predictions, {requests} requests per table row after 10 warmup calls "
            f"(load average when done: {load} on {os.cpu_count()} cores). "
            "REST and gRPC go through `serving.client` to the local server (`serving.server`) "
            "in another process over loopback; in-process is the model call alone, the limit. "
            "The local server is not TF Serving: its numbers say what the API layers cost here, not "
            "what `tensorflow_model_server` would do.\n\n" + "\n".join(lines))
    write_section("serving", "Serving: REST vs gRPC vs in-process", COMMAND, body)
    print(body)

"""Serving latency and throughput: REST vs gRPC vs the in-process model call, interleaved.

`python -m bench serving [--serving-model-dir DIR] [--rounds N]` measures
single-row predictions on `serving_raw`:

- in-process: `LoadedVersion.predict` on prebuilt columns, in this process (the limit);
- REST and gRPC: the template's clients against the local server, which runs in
  a separate process (so client and server do not share one GIL), over loopback,
  writing the request log as `make serve` does.

The three paths are measured interleaved: one client sends A B C A B C ...
(latency; the transport floor's bare gRPC and REST echo servers,
`bench._transport_floor`, join this interleaving, so that the template's
gRPC minus REST can be set against what grpcio itself costs more than
http.client and http.server), then 8 concurrent clients run a batch of each path in turn
(throughput), so that a change in the machine's load hits all paths alike. The
load average is recorded with every round. Last, a hot swap: one gRPC client's
latency while a new version is pushed, loaded and warmed. It writes the
medians over rounds, their differences and ratios to the in-process call, the
goals of issue 14 and the swap's spike into BENCHMARKS.md. DIR defaults to the
serving_model_dir of the config in $TFXT_CONFIG (else the default config), so
`make bench` measures the last pushed model; the server serves a copy of its
newest version.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List

from bench._transport_floor import FLOOR_PATHS, echo_calls

ROW = {"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5,
       "flipper_length_mm": 215, "body_mass_g": 5000, "sex": "female"}
COMMAND = "python -m bench serving"
PATHS = ("in-process", "REST", "gRPC")
CONCURRENCY = 8


def serve_in_subprocess(model_name: str, base_path: str, request_log: str) -> None:
    """Child process: serves `base_path` as `make serve` does, prints its ports, runs until stdin closes.

    The settings are the default config's (`ServingSettings`): poll interval,
    request size limit, batching and the request log's sample rate, size and rotation.
    """
    from pipeline.config import ServingSettings
    from serving.model_store import ModelStore
    from serving.request_log import RequestLog
    from serving.server import LocalServer

    settings = ServingSettings()
    store = ModelStore(model_name=model_name, base_path=base_path, poll_seconds=settings.poll_seconds)
    log = RequestLog(request_log, settings.request_log_sample_rate, settings.request_log_max_bytes,
                     settings.request_log_backups)
    server = LocalServer(store, rest_port=0, grpc_port=0, max_request_bytes=settings.max_request_bytes,
                         request_log=log, batching=settings.enable_batching,
                         max_batch_size=settings.max_batch_size).start()
    print(json.dumps({"rest": server.rest_port, "grpc": server.grpc_port}), flush=True)
    sys.stdin.read()
    server.stop()


def latencies(calls: Dict[str, Callable[[], object]], requests: int) -> Dict[str, List[float]]:
    """Seconds per call of each path, one client, the paths interleaved call by call (A B C A B C ...).

    The order rotates every cycle, so that no path always runs right after the same one.
    """
    names = list(calls)
    result: Dict[str, List[float]] = {name: [] for name in names}
    for cycle in range(requests):
        for name in names[cycle % len(names):] + names[:cycle % len(names)]:
            started = time.perf_counter()
            calls[name]()
            result[name].append(time.perf_counter() - started)
    return result


def throughputs(calls: Dict[str, Callable[[], object]], pool: ThreadPoolExecutor, requests: int,
                batch: int = CONCURRENCY * 5) -> Dict[str, float]:
    """Calls per second of each path from `CONCURRENCY` clients, the paths interleaved batch by batch.

    A batch is `batch` calls shared by the clients; each path runs one batch in
    turn until it has run `requests` calls.
    """
    names = list(calls)
    seconds = {name: 0.0 for name in names}
    per_client = max(batch // CONCURRENCY, 1)

    def client(call):
        for _ in range(per_client):
            call()

    for cycle in range(max(requests // batch, 1)):
        for name in names[cycle % len(names):] + names[:cycle % len(names)]:
            started = time.perf_counter()
            for future in [pool.submit(client, calls[name]) for _ in range(CONCURRENCY)]:
                future.result()
            seconds[name] += time.perf_counter() - started
    done = max(requests // batch, 1) * per_client * CONCURRENCY
    return {name: done / seconds[name] for name in names}


def run_rounds(calls: Dict[str, Callable[[], object]], rounds: int, requests: int,
               floor_calls: Dict[str, Callable[[], object]]) -> List[Dict]:
    """Per round: p50 and p99 (ms, one client) and throughput (8 clients) of every path, interleaved.

    `floor_calls` (`bench._transport_floor`) join the latency interleaving only.
    """
    for call in {**calls, **floor_calls}.values():
        for _ in range(20):
            call()
    results = []
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for round_index in range(rounds):
            row = {"round": round_index + 1, "load": os.getloadavg()[0]}
            for name, seconds in latencies({**calls, **floor_calls}, requests).items():
                seconds.sort()
                row[name] = {"p50": statistics.median(seconds) * 1000,
                             "p99": seconds[min(int(len(seconds) * 0.99), len(seconds) - 1)] * 1000}
            for name, rate in throughputs(calls, pool, requests).items():
                row[name]["throughput"] = rate
            results.append(row)
            print(json.dumps(row), flush=True)
    return results


def hot_swap(base: str, client, settle_seconds: float = 2.0) -> Dict[str, float]:
    """Latency of one client's gRPC requests while a new version is pushed and swapped in.

    Pushes a copy of the newest version as version+1 (copied under a temporary
    name, then renamed, as the Pusher does), and keeps sending requests until
    the new version has answered for `settle_seconds`. Returns the p50 before
    the push, the p99 and maximum from the push until then, and the failures.
    """
    from serving.versions import ready_versions

    newest = ready_versions(base)[-1]
    before = [_timed(client)[0] for _ in range(200)]
    staging = os.path.join(base, f".staging-{newest + 1}")
    shutil.copytree(os.path.join(base, str(newest)), staging)
    os.rename(staging, os.path.join(base, str(newest + 1)))
    during, failures, swapped_at = [], 0, None
    pushed_at = time.perf_counter()
    while swapped_at is None or time.perf_counter() - swapped_at < settle_seconds:
        if time.perf_counter() - pushed_at > 300:
            raise RuntimeError(f"version {newest + 1} was not served within 300 s")
        seconds, version = _timed(client)
        if version is None:
            failures += 1
        during.append(seconds)
        if version == newest + 1 and swapped_at is None:
            swapped_at = time.perf_counter()
    during.sort()
    return {"p50_before": statistics.median(before) * 1000,
            "p99_during": during[min(int(len(during) * 0.99), len(during) - 1)] * 1000,
            "max_during": during[-1] * 1000, "requests_during": len(during), "failures": failures,
            "swap_seconds": swapped_at - pushed_at}


def _timed(client):
    """(seconds, answering version or None on an error) of one gRPC prediction."""
    from serving.client import ServingClientError

    started = time.perf_counter()
    try:
        version = client.predict([ROW]).version
    except ServingClientError:
        version = None
    return time.perf_counter() - started, version


def main(argv) -> None:
    parser = argparse.ArgumentParser(prog=COMMAND)
    parser.add_argument("--serving-model-dir", default=None)
    parser.add_argument("--model-name", default="penguin")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="requests per path per round")
    args = parser.parse_args(argv)
    source = args.serving_model_dir
    if source is None:
        from pipeline.config import load_config

        source = load_config(os.environ.get("TFXT_CONFIG"), require_schema=False).serving_model_dir
    from serving.versions import ready_versions

    if not ready_versions(source):
        # Not an exception: `python -m bench` goes on with the other topics.
        print(f"Skipped: no pushed model in {source}; run the pipeline first (make run).")
        return

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as work:
        # The server gets a copy of the newest version, so that the hot swap adds a
        # version there and not in the pipeline's serving directory.
        base = os.path.join(work, "serving_model")
        newest = ready_versions(source)[-1]
        shutil.copytree(os.path.join(source, str(newest)), os.path.join(base, str(newest)))
        request_log = os.path.join(work, "requests.jsonl")
        child = subprocess.Popen(
            [sys.executable, "-c", f"from bench.serving import serve_in_subprocess; "
                                   f"serve_in_subprocess({args.model_name!r}, {base!r}, {request_log!r})"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ports = json.loads(child.stdout.readline())
            calls, rpc = _calls(args.model_name, base, ports)
            handler_ms = model_ms(calls["in-process"])
            floor_calls, stop_floor = echo_calls(handler_ms)
            load_before = os.getloadavg()
            try:
                results = run_rounds(calls, args.rounds, args.requests, floor_calls)
            finally:
                stop_floor()
            load_after = os.getloadavg()
            swap = hot_swap(base, rpc)
            print(json.dumps({"hot swap": swap}), flush=True)
        finally:
            child.stdin.close()
            child.wait(timeout=60)
        from serving.request_log import log_files

        logged = sum(1 for path in log_files(request_log) for _ in open(path))
    write(results, args.requests, load_before, load_after, logged, swap, handler_ms)


def model_ms(call: Callable[[], object], count: int = 100) -> float:
    """Median milliseconds of `call` (the in-process model call): how long the floor's handlers wait."""
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def _calls(model_name: str, base: str, ports: Dict[str, int]):
    """The three paths' calls, and the gRPC client (the hot swap uses it)."""
    from functools import partial

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
        "in-process": partial(loaded.predict, "serving_raw", columns),
        "REST": partial(rest.predict, [ROW]),
        "gRPC": partial(rpc.predict, [ROW]),
    }, rpc


def summarize(results: List[Dict]) -> Dict[str, Dict[str, float]]:
    """Medians over rounds of each path's p50, p99 and throughput."""
    return {name: {key: statistics.median(r[name][key] for r in results)
                   for key in ("p50", "p99", "throughput")} for name in PATHS}


def write(results: List[Dict], requests: int, load_before, load_after, logged: int,
          swap: Dict[str, float], handler_ms: float) -> None:
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
    rounds = ["| round | load average (1 min) | in-process p50 | REST p50 | gRPC p50 | REST floor p50 | "
              "gRPC floor p50 | in-process/s | REST/s | gRPC/s |", "|" + "---:|" * 10]
    rounds += [f"| {r['round']} | {r['load']:.1f} | {r['in-process']['p50']:.2f} | {r['REST']['p50']:.2f} | "
               f"{r['gRPC']['p50']:.2f} | {r['REST floor']['p50']:.2f} | {r['gRPC floor']['p50']:.2f} | "
               f"{r['in-process']['throughput']:.0f} | "
               f"{r['REST']['throughput']:.0f} | {r['gRPC']['throughput']:.0f} |" for r in results]
    body = (
        f"Single-row `serving_raw` predictions. {len(results)} rounds; in each, {requests} requests per "
        "path from one client (latency), the paths interleaved request by request (A B C A B C ...), "
        f"then {requests} per path from {CONCURRENCY} concurrent clients (throughput), interleaved in "
        f"batches of {CONCURRENCY * 5} requests, so that a change in the machine's load hits all paths "
        "alike. The table holds the medians over rounds. REST and gRPC go through `serving.client` to "
        "the local server (`serving.server`) in another process over loopback, with the default "
        "config's settings, server-side batching and the request log on, as `make serve` runs it "
        f"({logged} lines logged); "
        "in-process is the model call alone, the limit. "
        f"Load average (1, 5, 15 min): {_load(load_before)} before, {_load(load_after)} after, on "
        f"{os.cpu_count()} cores shared with other work, so absolute numbers are inflated; compare the "
        "differences and ratios, which come from the same rounds. The local server is not TF Serving: "
        "its numbers say what the API layers cost here, not what `tensorflow_model_server` would do.\n\n"
        + "\n".join(lines) + "\n\nGoals (issue 14): "
        + "; ".join(f"{goal}: {'met' if met else 'NOT met'}" for goal, met in goals)
        + ".\n\n" + _floor_text(results, handler_ms, summary)
        + "\n\nHot swap: one gRPC client sends requests while a copy of the version is pushed as a new "
        f"version. Before the push p50 {swap['p50_before']:.2f} ms; from the push until the new version "
        f"had answered for 2 s ({swap['swap_seconds']:.1f} s to load and warm it, "
        f"{swap['requests_during']:.0f} requests): p99 {swap['p99_during']:.2f} ms, "
        f"max {swap['max_during']:.2f} ms, {swap['failures']:.0f} failed."
        + "\n\nPer round:\n\n" + "\n".join(rounds))
    write_section("serving", "Serving: REST vs gRPC vs in-process", COMMAND, body)
    print(body)


def _floor_text(results: List[Dict], handler_ms: float, summary: Dict[str, Dict[str, float]]) -> str:
    """The transport floor's paragraph: bare gRPC minus bare REST next to the template's gRPC minus REST."""
    floor = {name: statistics.median(r[name]["p50"] for r in results) for name in FLOOR_PATHS}
    return (
        "Transport floor (`bench._transport_floor`), interleaved with the paths above: a bare grpc.aio "
        "server and a bare http.server in one child process, each with one method that waits "
        f"{handler_ms:.2f} ms (the in-process p50) and echoes 300 bytes, called with grpcio's stub and "
        f"http.client. p50: REST floor {floor['REST floor']:.2f} ms, "
        f"gRPC floor {floor['gRPC floor']:.2f} ms; "
        f"gRPC minus REST {floor['gRPC floor'] - floor['REST floor']:+.2f} ms on the floor, "
        f"{summary['gRPC']['p50'] - summary['REST']['p50']:+.2f} ms through the template.")


def _load(load) -> str:
    return ", ".join(f"{x:.1f}" for x in load)

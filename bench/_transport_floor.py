"""The transport floor for `bench.serving`: bare grpcio against a bare http.server, nothing of the template.

Issue 14 asks for gRPC no slower than REST. This measures what the two
transports cost on their own: a grpc.aio server (the local server's kind) and
the standard library's ThreadingHTTPServer (the local REST server's kind), each
with one method that waits `handler_ms` (the model call's stand-in) and echoes
its bytes, in one child process; one client in this process calls them with
grpcio's blocking stub and http.client, interleaved call by call. If gRPC is
slower than REST here, no change to the template's servicers can make it faster.
"""

import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Callable, Dict

PAYLOAD = b"x" * 300  # about a single-row PredictRequest
_METHOD = "/floor.Echo/Echo"
FLOOR_PATHS = ("REST floor", "gRPC floor")


def serve(handler_ms: float) -> None:
    """Child process: both echo servers on free ports; prints them, runs until stdin closes."""
    delay = handler_ms / 1000
    rest_port = _start_http(delay)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server, grpc_port = asyncio.run_coroutine_threadsafe(_start_grpc(delay), loop).result()
    print(json.dumps({"rest": rest_port, "grpc": grpc_port}), flush=True)
    sys.stdin.read()
    asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(10)


def _start_http(delay: float) -> int:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as serving.rest: headers and body go out in two writes

        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


async def _start_grpc(delay: float):
    import grpc

    async def echo(request: bytes, context) -> bytes:
        time.sleep(delay)  # blocks the loop, as a lone Predict runs inline on the local server
        return request

    handler = grpc.method_handlers_generic_handler(
        "floor.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.aio.server(handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def echo_calls(handler_ms: float):
    """({"REST floor": call, "gRPC floor": call}, stop): the two clients' calls, and what ends them."""
    import http.client

    import grpc

    child = subprocess.Popen(
        [sys.executable, "-c", f"from bench._transport_floor import serve; serve({handler_ms!r})"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ports = json.loads(child.stdout.readline())
    connection = http.client.HTTPConnection("127.0.0.1", ports["rest"], timeout=30)
    channel = grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}")
    echo = channel.unary_unary(_METHOD)

    def rest() -> bytes:
        connection.request("POST", "/echo", body=PAYLOAD, headers={"Content-Type": "application/json"})
        return connection.getresponse().read()

    def rpc() -> bytes:
        return echo(PAYLOAD, timeout=30.0)

    def stop() -> None:
        connection.close()
        channel.close()
        child.stdin.close()
        child.wait(timeout=60)

    calls: Dict[str, Callable[[], bytes]] = dict(zip(FLOOR_PATHS, (rest, rpc)))
    return calls, stop

"""The floor: a bare grpc.aio server that echoes raw bytes back.

Generic unary-unary methods with no (de)serializers, so a call costs exactly
gRPC's own transport and Python binding overhead: no protobuf, no servicer
logic, no thread hop. ``/bench.Echo/Echo`` returns the request's bytes;
``/bench.Echo/Sink`` returns 64 bytes whatever it was sent (a big request and
a small response, the shape of a Classify call). Run it as its own process:

    python benchmarks/echo_server.py [--port 0]

It prints ``echo serving on HOST:PORT`` once listening and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
from grpc import aio

METHOD = "/bench.Echo/Echo"
SINK = "/bench.Echo/Sink"
MAX_MESSAGE = 64 * 1024 * 1024


async def _echo(request: bytes, context: aio.ServicerContext) -> bytes:
    return request


_SMALL = b"r" * 64


async def _sink(request: bytes, context: aio.ServicerContext) -> bytes:
    return _SMALL


async def serve(host: str, port: int) -> None:
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ]
    )
    methods = {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "Sink": grpc.unary_unary_rpc_method_handler(_sink),
    }
    handler = grpc.method_handlers_generic_handler("bench.Echo", methods)
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"echo serving on {host}:{bound}", flush=True)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()

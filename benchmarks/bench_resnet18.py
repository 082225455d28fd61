"""resnet18 (random weights, cpu) served by modelplex vs called in-process.

The input is a raw FLOAT32 tensor of shape (3, 224, 224), 602,112 bytes, so no image
decoding is involved on either side.

Sequential, batch 1, one request at a time (p50/p99), in interleaved rounds:

* the floors: a bare grpc.aio server in its own process that echoes the 602 KB back
  (602 KB each way) and one that answers 64 bytes (602 KB up, the shape of Classify);
* modelplex Classify with the sync ``modelplex_client.Client`` (numpy array in) and with
  a raw grpc stub (request built once);
* in this process, without gRPC, the same model object path: the plugin's factory builds
  the model (load, warmup) on the main thread, then the direct call is
  ``model.classify([model.preprocess(RawTensor)], top_k=5)`` (the plugin's own
  preprocess of a raw tensor, torch.stack, forward, softmax, top-k); for reference also
  the bare torchvision forward ``net(x[None])`` under ``torch.inference_mode()``.

The headline ratio is served p50 / direct plugin-path p50, both measured in the same run.

Then throughput with 16 concurrent clients (16 AsyncClient channels driven by one
asyncio loop, each sending back to back) with dynamic batching (max_batch_size 8 by
default) and without (max_batch_size 1). The mean batch a forward pass took is read from
the server's per-instance ``completed`` counter (it counts forward passes).

Each configuration is its own server process, ``python -m modelplex.server.cli --config
<toml> --port 0``, serving one model: two CPU models in one process would slow each
other's forwards (each instance thread keeps its own OpenMP team; see
docs/benchmarks.md). Torch's intra-op threads are set explicitly (default: 2, the
machine's cores) in the servers (OMP_NUM_THREADS) and in this process; on a 2-core
machine the server's torch threads and the client compete for the same cores.

    python benchmarks/bench_resnet18.py            # ~90 s
    python benchmarks/bench_resnet18.py --quick    # ~30 s
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

SHAPE = (3, 224, 224)


def entry(batch: int) -> dict[str, Any]:
    return {"spec": "resnet18", "name": f"resnet18-b{batch}", "weights": "random", "devices": ["cpu"],
            "max_batch_size": batch}  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="resnet18 served by modelplex vs in-process")
    p.add_argument("--quick", action="store_true", help="fewer requests (~30 s)")
    p.add_argument("--requests", type=int, help="sequential requests per configuration (default 200; quick 40)")
    p.add_argument("--warmup", type=int, default=10, help="untimed sequential requests per configuration first")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds the sequential requests are split in")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients for the throughput test")
    p.add_argument(
        "--throughput-requests", type=int, help="requests per throughput test (default 480 = 30 per client; quick 160)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="max_batch_size of the batching model (8 or 16)")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch intra-op threads in the server and in this process (default: all cores)",
    )
    c.add_run_arguments(p)
    args = p.parse_args()
    if args.requests is None:
        args.requests = 40 if args.quick else 200
    if args.throughput_requests is None:
        args.throughput_requests = 160 if args.quick else 480
    return args


def main() -> int:
    args = parse_args()
    import grpc
    import torch
    from echo_server import METHOD, SINK

    from modelplex_client import Client
    from modelplex_client._requests import channel_options
    from modelplex_client.pb import image_classification_pb2_grpc as pb_grpc

    batched = f"resnet18-b{args.batch_size}"
    array, raw, request, payload = c.classify_inputs(SHAPE, batched, args.torch_threads)
    options = channel_options(64)

    with c.workdir() as wd:
        print("loading resnet18 in this process and in the servers ...", file=sys.stderr)
        model = c.build_in_process(entry(args.batch_size))
        net = model._model  # the torchvision module the plugin built
        x = model.preprocess(raw)

        def forward() -> object:
            with torch.inference_mode():
                return net(x[None])

        with (
            c.echo_server(wd) as echo,
            c.modelplex_server(wd, c.config_toml(entry(args.batch_size)), torch_threads=args.torch_threads) as server,
            c.modelplex_server(
                wd, c.config_toml(entry(1)), torch_threads=args.torch_threads, name="modelplex-b1"
            ) as server1,
        ):
            echo_channel = grpc.insecure_channel(echo.address, options=options)
            echo_call = echo_channel.unary_unary(METHOD)
            sink_call = echo_channel.unary_unary(SINK)
            client = Client(server.address)
            channel = grpc.insecure_channel(server.address, options=options)
            stub = pb_grpc.ImageClassificationStub(channel)

            assert len(stub.Classify(request).results[0].classes) == 5
            assert len(client.classify([array], model=batched)[0]) == 5
            assert echo_call(payload) == payload
            monitor = c.NoiseMonitor(max_wait=args.wait_quiet)
            monitor.start(echo, server, server1)

            blocks = {
                "echo floor, 602 KB each way": c.sync_block(lambda: echo_call(payload)),
                "echo floor, 602 KB up, 64 B back": c.sync_block(lambda: sink_call(payload)),
                "modelplex Classify (Client.classify)": c.sync_block(lambda: client.classify([array], model=batched)),
                "modelplex Classify (raw stub)": c.sync_block(lambda: stub.Classify(request)),
                "in-process direct: preprocess + classify": c.sync_block(
                    lambda: model.classify([model.preprocess(raw)], 5)
                ),
                "in-process direct, each after a 602 KB echo (cold)": c.sync_block(
                    lambda: model.classify([model.preprocess(raw)], 5), lambda: sink_call(payload)
                ),
                "in-process torchvision forward only": c.sync_block(forward),
            }
            print(
                f"sequential: {args.requests} requests per configuration in {args.rounds} interleaved rounds "
                f"(+{args.warmup} warmup); torch threads {args.torch_threads}",
                file=sys.stderr,
            )
            samples = c.interleaved(
                blocks, requests=args.requests, warmup=args.warmup, rounds=args.rounds, monitor=monitor
            )
            sequential = {name: c.summarize(s) for name, s in samples.items()}

            ceiling = monitor.guard(lambda: in_process_ceiling(model, x, args.batch_size))

            print(
                f"throughput: {args.throughput_requests} requests from {args.clients} clients, "
                f"batch 1 then {args.batch_size}",
                file=sys.stderr,
            )
            throughput = {}
            client1 = Client(server1.address)
            for b, srv, cl in ((1, server1, client1), (args.batch_size, server, client)):
                name = f"resnet18-b{b}"

                def run(name: str = name, srv: c.ServerProcess = srv, cl: Client = cl) -> dict[str, Any]:
                    before = cl.get_model(name).instances[0].completed
                    result = asyncio.run(measure_throughput(srv, name, array, args))
                    passes = cl.get_model(name).instances[0].completed - before
                    result["forward_passes"] = passes
                    result["mean_batch"] = result["requests_incl_warmup"] / passes if passes else float("nan")
                    return result

                throughput[f"max_batch_size {b}"] = monitor.guard(run)
            noise = monitor.sample()
            client.close()
            client1.close()
            channel.close()
            echo_channel.close()

    report = build_report(sequential, throughput, ceiling, args, noise)
    c.finish(
        "resnet18",
        args,
        report,
        {
            "machine": c.machine_info(c.trees(args), args.torch_threads),
            "request_bytes": request.ByteSize(),
            "sequential_us": sequential,
            "in_process_ceiling": ceiling,
            "throughput": throughput,
            "noise": noise,
        },
    )
    return 0


def in_process_ceiling(model: Any, x: Any, batch: int, seconds: float = 3.0) -> dict[str, float]:
    """Images/s of the plugin's classify() called back to back in this process, at batch 1 and
    ``batch``: what one instance could do with no server at all."""
    out = {}
    for b in (1, batch):
        inputs = [x] * b
        model.classify(inputs, 5)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            model.classify(inputs, 5)
            n += 1
        out[f"batch {b} img/s"] = n * b / (time.perf_counter() - t0)
    return out


async def measure_throughput(server: c.ServerProcess, model: str, array: Any, args: argparse.Namespace) -> dict:
    from modelplex_client import AsyncClient

    clients = [AsyncClient(server.address) for _ in range(args.clients)]
    try:
        # every client sends requests back to back; one loop drives them all
        async def drive(n: int) -> tuple[float, list[float]]:
            per_client = max(1, n // len(clients))
            lat: list[float] = []
            clock = time.perf_counter

            async def one(cl: AsyncClient) -> None:
                for _ in range(per_client):
                    t0 = clock()
                    await cl.classify([array], model=model)
                    lat.append(clock() - t0)

            t0 = clock()
            await asyncio.gather(*(one(cl) for cl in clients))
            return clock() - t0, lat

        warmup = 2 * len(clients)
        await drive(warmup)
        gc.collect()
        cpu_client0, cpu_server0 = c.self_cpu_seconds(), server.cpu_seconds()
        wall, latencies = await drive(args.throughput_requests)
        cpu_client, cpu_server = c.self_cpu_seconds() - cpu_client0, server.cpu_seconds() - cpu_server0
    finally:
        await asyncio.gather(*(cl.close() for cl in clients))
    n = len(latencies)
    return {
        "clients": args.clients,
        "requests": n,
        "requests_incl_warmup": n + warmup,
        "wall_s": wall,
        "req_per_s": n / wall,
        **c.summarize([latencies]),
        "client_cpu_ms_per_req": cpu_client / n * 1e3,
        "server_cpu_ms_per_req": cpu_server / n * 1e3,
    }


def build_report(sequential, throughput, ceiling, args, noise) -> str:
    direct = sequential["in-process direct: preprocess + classify"]["p50_us"]
    fwd = sequential["in-process torchvision forward only"]["p50_us"]
    base = throughput["max_batch_size 1"]["req_per_s"]
    return "\n".join(
        [
            c.noise_line(noise),
            "",
            f"### resnet18, batch 1, sequential (n={args.requests} each, torch threads {args.torch_threads} "
            "in server and benchmark process)",
            "",
            c.table(
                ["configuration", "p50 ms", "p99 ms", "p50 / direct", "p50 / forward", "round p50s ms"],
                [
                    [name, s["p50_us"] / 1e3, s["p99_us"] / 1e3, f"{s['p50_us'] / direct:.3f}x",
                     f"{s['p50_us'] / fwd:.3f}x", c.spread([x / 1e3 for x in s["p50_us_rounds"]])]
                    for name, s in sequential.items()
                ],
            ),
            "",
            f"### Throughput, {args.clients} concurrent asyncio clients (n={args.throughput_requests})",
            "",
            c.table(
                ["server model", "req/s", "vs batch 1", "mean batch", "p50 ms", "p99 ms", "client CPU ms/req",
                 "server CPU ms/req"],
                [
                    [name, t["req_per_s"], f"{t['req_per_s'] / base:.2f}x", t["mean_batch"], t["p50_us"] / 1e3,
                     t["p99_us"] / 1e3, t["client_cpu_ms_per_req"], t["server_cpu_ms_per_req"]]
                    for name, t in throughput.items()
                ],
            ),
            "",
            "In-process ceiling (plugin classify() back to back, no server): "
            + ", ".join(f"{k} {v:.1f}" for k, v in ceiling.items()),
        ]
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

"""Per-request server overhead of modelplex with a trivial model, against a bare gRPC floor.

The model is the example plugin's ``dominant-color``: its input a raw FLOAT32 tensor of shape
(3, 32, 32) (a 12 KB request), its work the mean of each channel, a 3 x 3 mix and a softmax, so
what is measured is the server, not the model. Torch runs 1 thread everywhere by default.

Sequential, one request at a time (sync client, p50/p99), in interleaved rounds:

* the floor: ``echo_server.py``, a bare grpc.aio server in its own process echoing a payload
  as big as the Classify request;
* per modelplex server: grpc's own ``Health.Check`` (the server process and protobuf, no
  modelplex code), ``Classify`` with a raw grpc stub (request built once), and with
  ``modelplex_client.Client.classify(array)`` (builds the request on every call);
* in this process, without gRPC: ``runtime.classify`` (validation, the batch queue, the hop to
  the instance's thread and back) and the model's own ``classify([preprocess(t)], 3)``, in a
  hot loop and each call right after an echo RPC (cold caches).

Then throughput with 8 requests in flight from one asyncio client (the floor, a raw grpc.aio
stub, ``AsyncClient``), with the CPU time client and server spent per request.

With ``--compare-tree DIR`` (a checkout of another commit: ``git worktree add /tmp/prev
641f188``) that checkout's server (and its own example plugin) runs beside this one's and is
measured in the same rounds, alternating; the report adds the two side by side with ratios.

    python benchmarks/bench_overhead.py            # ~30 s
    python benchmarks/bench_overhead.py --quick    # ~10 s
    python benchmarks/bench_overhead.py --compare-tree /tmp/prev --wait-quiet 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

MODEL = "dominant-color"
SHAPE = (3, 32, 32)
# Valid before and after the task units: the old plugin's `size` setting defaults to 32.
ENTRY = {"spec": MODEL, "weights": "random", "devices": ["cpu"]}
FLOOR = "echo floor (grpc.aio raw bytes)"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests (~10 s)")
    p.add_argument("--requests", type=int, help="sequential requests per configuration (default 1000; quick 200)")
    p.add_argument("--warmup", type=int, default=100, help="untimed requests per configuration first")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the requests are split in")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight for the throughput test")
    p.add_argument("--throughput-requests", type=int, help="requests per throughput test (default 4000; quick 800)")
    p.add_argument("--torch-threads", type=int, default=1, help="in the servers and in this process (default 1)")
    c.add_run_arguments(p, compare=True)
    args = p.parse_args()
    args.requests = args.requests or (200 if args.quick else 1000)
    args.throughput_requests = args.throughput_requests or (800 if args.quick else 4000)
    if args.quick:
        args.warmup = min(args.warmup, 50)
    return args


def main() -> int:
    args = parse_args()
    import grpc
    from echo_server import METHOD
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from modelplex_client import Client
    from modelplex_client._requests import channel_options
    from modelplex_client.pb import image_classification_pb2_grpc as pb_grpc

    array, raw, request, payload = c.classify_inputs(SHAPE, MODEL, args.torch_threads)
    trees = c.trees(args)

    with c.workdir() as wd, contextlib.ExitStack() as stack:
        sites = [c.install_example_plugin(wd / f"site{i}", t, importable=i == 0) for i, t in enumerate(trees)]
        loop = asyncio.new_event_loop()
        registry, loaded = c.load_in_process(loop, ENTRY)
        model, runtime = loaded.instances[0].model, loaded.runtime
        expected = [s.label for s in model.classify([model.preprocess(raw)], 3)[0]]

        echo = stack.enter_context(c.echo_server(wd))
        servers = [
            stack.enter_context(
                c.modelplex_server(
                    wd, c.config_toml(ENTRY), tree=t, site=site, torch_threads=args.torch_threads, name=f"server{i}"
                )
            )
            for i, (t, site) in enumerate(zip(trees, sites, strict=True))
        ]
        echo_call = stack.enter_context(grpc.insecure_channel(echo.address, options=channel_options(64)))
        echo_call = echo_call.unary_unary(METHOD)
        assert echo_call(payload) == payload
        blocks = {FLOOR: c.sync_block(lambda: echo_call(payload))}
        health_request = health_pb2.HealthCheckRequest(service="")
        for t, srv in zip(trees, servers, strict=True):
            channel = stack.enter_context(grpc.insecure_channel(srv.address, options=channel_options(64)))
            stub, health = pb_grpc.ImageClassificationStub(channel), health_pb2_grpc.HealthStub(channel)
            client = stack.enter_context(Client(srv.address))
            assert [s.label for s in stub.Classify(request).results[0].classes] == expected
            assert [s.label for s in client.classify([array], model=MODEL)[0]] == expected
            blocks[f"{t.label} Health.Check (raw stub)"] = c.sync_block(lambda h=health: h.Check(health_request))
            blocks[f"{t.label} Classify (raw stub)"] = c.sync_block(lambda s=stub: s.Classify(request))
            blocks[f"{t.label} Classify (Client.classify)"] = c.sync_block(
                lambda cl=client: cl.classify([array], model=MODEL)
            )

        def direct() -> object:
            return model.classify([model.preprocess(raw)], 3)

        blocks["in-process runtime.classify (no gRPC)"] = c.async_block(loop, lambda: runtime.classify([raw], 0))
        blocks["in-process direct preprocess+classify (hot loop)"] = c.sync_block(direct)
        blocks["in-process direct, each after an echo RPC (cold)"] = c.sync_block(direct, lambda: echo_call(payload))

        monitor = c.NoiseMonitor(max_wait=args.wait_quiet)
        monitor.start(echo, *servers)
        print(f"sequential: {args.requests} requests per configuration in {args.rounds} rounds", file=sys.stderr)
        samples = c.interleaved(blocks, requests=args.requests, warmup=args.warmup, rounds=args.rounds, monitor=monitor)
        sequential = {name: c.summarize(s) for name, s in samples.items()}
        print(f"throughput: {args.throughput_requests} requests, {args.concurrency} in flight", file=sys.stderr)
        throughput = asyncio.run(measure_throughput(echo, servers, trees, payload, request, array, args, monitor))
        noise = monitor.sample()
        loop.run_until_complete(registry.close())
        loop.close()

    report = build_report(sequential, throughput, trees, args, request.ByteSize(), noise)
    c.finish(
        "overhead",
        args,
        report,
        {
            "machine": c.machine_info(trees, args.torch_threads),
            "imports": {s.name: s.imports for s in servers},
            "request_bytes": request.ByteSize(),
            "sequential_us": sequential,
            "throughput": throughput,
            "noise": noise,
        },
    )
    return 0


async def measure_throughput(echo, servers, trees, payload, request, array, args, monitor) -> dict[str, Any]:
    from echo_server import METHOD
    from grpc import aio

    from modelplex_client import AsyncClient
    from modelplex_client._requests import channel_options
    from modelplex_client.pb import image_classification_pb2_grpc as pb_grpc

    channels = [aio.insecure_channel(s.address, options=channel_options(64)) for s in [echo, *servers]]
    clients = [AsyncClient(s.address) for s in servers]
    echo_call = channels[0].unary_unary(METHOD)
    configs = {FLOOR: (echo, lambda: echo_call(payload))}
    for t, srv, channel, client in zip(trees, servers, channels[1:], clients, strict=True):
        stub = pb_grpc.ImageClassificationStub(channel)
        configs[f"{t.label} Classify (raw aio stub)"] = (srv, lambda s=stub: s.Classify(request))
        configs[f"{t.label} Classify (AsyncClient.classify)"] = (
            srv,
            lambda cl=client: cl.classify([array], model=MODEL),
        )
    for _, call in configs.values():  # warm every path up first
        await c.run_concurrent(call, concurrency=args.concurrency, requests=min(200, args.throughput_requests))
    per_round = max(args.concurrency, args.throughput_requests // args.rounds)
    rounds: dict[str, list[tuple[float, list[float], float, float]]] = {name: [] for name in configs}

    async def one_round(order: list[str]) -> dict[str, tuple[float, list[float], float, float]]:
        out = {}
        for name in order:
            proc, call = configs[name]
            gc.collect()
            cpu_client0, cpu_server0 = c.self_cpu_seconds(), proc.cpu_seconds()
            wall, latencies = await c.run_concurrent(call, concurrency=args.concurrency, requests=per_round)
            out[name] = (wall, latencies, c.self_cpu_seconds() - cpu_client0, proc.cpu_seconds() - cpu_server0)
        return out

    for r in range(args.rounds):  # interleaved, like the sequential test
        for name, result in (await monitor.guard_async(lambda r=r: one_round(c.alternate(list(configs), r)))).items():
            rounds[name].append(result)
    await asyncio.gather(*(ch.close() for ch in channels), *(cl.close() for cl in clients))
    out: dict[str, Any] = {}
    for name, rs in rounds.items():
        n, wall = sum(len(r[1]) for r in rs), sum(r[0] for r in rs)
        out[name] = {
            "requests": n,
            "concurrency": args.concurrency,
            "req_per_s": n / wall,
            "req_per_s_rounds": [len(r[1]) / r[0] for r in rs],
            **c.summarize([r[1] for r in rs]),
            "client_cpu_us_per_req": sum(r[2] for r in rs) / n * 1e6,
            "server_cpu_us_per_req": sum(r[3] for r in rs) / n * 1e6,
            "server_cpu_us_per_req_rounds": [r[3] / len(r[1]) * 1e6 for r in rs],
        }
    return out


def build_report(sequential, throughput, trees, args, request_bytes, noise) -> str:
    floor = sequential[FLOOR]
    lines = [
        c.noise_line(noise),
        "",
        f"### Sequential round trip, {MODEL} (n={args.requests} each in {args.rounds} rounds, "
        f"torch threads {args.torch_threads}, request {request_bytes} B; the floor echoes as much)",
        "",
        c.table(
            ["configuration", "p50 µs", "p99 µs", "p50 − floor µs", "round p50s µs: median (range)"],
            [
                [name, s["p50_us"], s["p99_us"], "" if name.startswith("in-process") else s["p50_us"] - floor["p50_us"],
                 c.spread(s["p50_us_rounds"])]
                for name, s in sequential.items()
            ],
        ),
        "",
        f"### Throughput, {args.concurrency} in flight (one asyncio client, n={args.throughput_requests})",
        "",
        c.table(
            ["configuration", "req/s", "round req/s: median (range)", "p50 µs", "p99 µs", "client CPU µs/req",
             "server CPU µs/req"],
            [
                [name, t["req_per_s"], c.spread(t["req_per_s_rounds"]), t["p50_us"], t["p99_us"],
                 t["client_cpu_us_per_req"], t["server_cpu_us_per_req"]]
                for name, t in throughput.items()
            ],
        ),
    ]  # fmt: skip
    if len(trees) == 2:
        floor_p50, floor_rps = floor["p50_us_rounds"], throughput[FLOOR]["req_per_s_rounds"]

        def per_tree(results: dict[str, Any], key: str, stat: str) -> list[list[float]]:
            return [results[f"{t.label} {key}"][stat] for t in trees]

        def minus(xs: list[float], ys: list[float]) -> list[float]:
            return [x - y for x, y in zip(xs, ys, strict=True)]

        def over(xs: list[float], ys: list[float]) -> list[float]:
            return [x / y for x, y in zip(xs, ys, strict=True)]

        stub = per_tree(sequential, "Classify (raw stub)", "p50_us_rounds")
        client = per_tree(sequential, "Classify (Client.classify)", "p50_us_rounds")
        aio_stub = per_tree(throughput, "Classify (raw aio stub)", "req_per_s_rounds")
        aio_client = per_tree(throughput, "Classify (AsyncClient.classify)", "req_per_s_rounds")
        cpu = per_tree(throughput, "Classify (AsyncClient.classify)", "server_cpu_us_per_req_rounds")
        metrics = {
            "Classify p50 − floor p50, raw stub, µs": [minus(x, floor_p50) for x in stub],
            "Classify p50 − floor p50, Client, µs": [minus(x, floor_p50) for x in client],
            "Classify p50 / floor p50, Client": [over(x, floor_p50) for x in client],
            f"req/s at {args.concurrency} in flight, raw aio stub": aio_stub,
            f"req/s at {args.concurrency} in flight, AsyncClient": aio_client,
            "req/s AsyncClient / floor req/s": [over(x, floor_rps) for x in aio_client],
            "server CPU µs/req, AsyncClient": cpu,
        }
        lines += [
            "",
            f"### {trees[0].label} vs {trees[1].label}, measured alternating in the same rounds "
            f"(floor p50 {c.spread(floor_p50)} µs, floor req/s {c.spread(floor_rps)})",
            "",
            c.comparison([t.label for t in trees], {k: (a, b) for k, (a, b) in metrics.items()}),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

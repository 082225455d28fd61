"""Where a Classify request's time goes inside the server, and what-if variants of the server.

Starts, side by side (each in its own process, all idle but the one measured):

* the stock server (``python -m modelplex.server.cli``);
* the same server instrumented by ``whatif_server.py --timing``: the time spent in the
  Classify servicer method, in the runtime's classify() (validation, batch queue, hop to
  the worker thread and back) and in the worker's _run_batch (preprocess + classify);
* for the trivial model, a ladder of what-ifs: ``--canned`` (full request parsing and
  validation, fixed scores, no model), ``--servicer-direct`` (the model called by the
  servicer on the event loop: no queue, no thread hop), and ``--asyncio-batcher`` (the
  batching design before commit 0e15c68, for a before/after in the same run);
* the bare grpc.aio echo floor (and, trivial model, grpc's Health.Check on the stock server);

and measures sequential Client.classify round trips against each, in interleaved
rounds, plus (trivial model) throughput with 8 in flight from one asyncio client.
See whatif_server.py for the patches.

    python benchmarks/bench_breakdown.py --model trivial
    python benchmarks/bench_breakdown.py --model resnet18
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

ASYNCIO = "before 0e15c68: asyncio task + run_in_executor (--asyncio-batcher)"
DIRECT = "what-if: servicer calls the model, no queue, no thread (--servicer-direct)"
CANNED = "what-if: no model, canned scores (--canned)"
HEALTH = "stock server, Health.Check (no modelplex code)"
TWO_MODELS = "stock server with a second, idle CPU model loaded"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="server-side breakdown and what-if variants")
    p.add_argument("--model", choices=["trivial", "resnet18"], default="trivial")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--requests", type=int, help="sequential requests per server (trivial 1000, resnet18 100)")
    p.add_argument("--warmup", type=int, help="untimed requests per server first (trivial 100, resnet18 10)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--throughput-requests", type=int, help="trivial model only (default 2000; quick 500)")
    p.add_argument("--torch-threads", type=int, help="default: 1 for trivial, all cores for resnet18")
    c.add_run_arguments(p)
    args = p.parse_args()
    trivial = args.model == "trivial"
    if args.requests is None:
        args.requests = (200 if args.quick else 1000) if trivial else (30 if args.quick else 100)
    if args.warmup is None:
        args.warmup = 100 if trivial else 10
    if args.throughput_requests is None:
        args.throughput_requests = 500 if args.quick else 2000
    if args.torch_threads is None:
        import os

        args.torch_threads = 1 if trivial else (os.cpu_count() or 1)
    return args


def main() -> int:
    args = parse_args()
    import grpc
    import numpy as np
    import torch
    from echo_server import METHOD, SINK

    from modelplex.tasks import RawTensor
    from modelplex_client import AsyncClient, Client

    torch.set_num_threads(args.torch_threads)
    trivial = args.model == "trivial"
    if trivial:
        name, shape = "dominant-color", (3, 1, 1)
        model_cfg = {"spec": name, "weights": "random", "devices": ["cpu"], "settings": {"size": 1}}
        toml = (
            '[server]\nlog_level = "warning"\n[[models]]\nspec = "dominant-color"\nweights = "random"\n'
            'devices = ["cpu"]\nsettings = { size = 1 }\n'
        )
    else:
        name, shape = "resnet18", (3, 224, 224)
        model_cfg = {"spec": name, "weights": "random", "devices": ["cpu"]}
        toml = '[server]\nlog_level = "warning"\n[[models]]\nspec = "resnet18"\nweights = "random"\ndevices = ["cpu"]\n'
    array = np.random.default_rng(0).random(shape, dtype=np.float32)
    raw = RawTensor(shape, "float32", array.tobytes())

    with c.workdir() as wd, contextlib.ExitStack() as stack:
        site = [c.install_example_plugin(wd / "site")] if trivial else []
        loop = asyncio.new_event_loop()
        if trivial:  # one torch thread: the registry's instance thread is harmless
            loaded = c.load_in_process(loop, model_cfg)
            model = loaded.instances[0].model
        else:  # no second OpenMP team in this process (see _common.build_in_process)
            loaded, model = None, c.build_in_process(model_cfg)
        k = min(5, len(model.labels))
        timing_file = wd / "timing.json"
        variants: dict[str, list[str] | None] = {
            "stock server": None,
            "instrumented (--timing)": ["--timing", str(timing_file)],
        }
        tomls = dict.fromkeys(variants, toml)
        if trivial:
            variants[ASYNCIO] = ["--asyncio-batcher"]
            variants[DIRECT] = ["--servicer-direct"]
            variants[CANNED] = ["--canned"]
        else:
            # the same model, but a second (idle) CPU model loaded in the same server process
            variants[TWO_MODELS] = None
            tomls[TWO_MODELS] = toml + '[[models]]\nspec = "resnet18"\nname = "other"\nweights = "random"\n'
            tomls[TWO_MODELS] += 'devices = ["cpu"]\n'
        tomls = {label: tomls.get(label, toml) for label in variants}
        echo = stack.enter_context(c.echo_server(wd))
        servers: dict[str, c.ServerProcess] = {}
        timing_stack = contextlib.ExitStack()
        for i, (label, whatif) in enumerate(variants.items()):
            target = timing_stack if whatif and "--timing" in whatif else stack
            servers[label] = target.enter_context(
                c.modelplex_server(
                    wd,
                    tomls[label],
                    pythonpath=site,
                    torch_threads=args.torch_threads,
                    name=f"modelplex{i}",
                    whatif=whatif,
                )
            )
        clients = {label: stack.enter_context(Client(s.address)) for label, s in servers.items()}
        echo_channel = stack.enter_context(grpc.insecure_channel(echo.address))
        payload = b"x" * len(raw.data)
        call = echo_channel.unary_unary(SINK if not trivial else METHOD)
        monitor = c.NoiseMonitor(max_wait=args.wait_quiet)
        for s in [echo, *servers.values()]:
            monitor.add(s.pid)
        quiet = c.wait_for_quiet(args.wait_quiet, pids=monitor.pids) if args.wait_quiet else None
        monitor.restart()  # the noise figures cover the measurement, not the wait

        blocks = {"echo floor": c.sync_block(lambda: call(payload))}
        if trivial:
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            health = health_pb2_grpc.HealthStub(
                stack.enter_context(grpc.insecure_channel(servers["stock server"].address))
            )
            check = health_pb2.HealthCheckRequest()
            blocks[HEALTH] = c.sync_block(lambda: health.Check(check))
        for label, cl in clients.items():
            blocks[label] = c.sync_block(lambda cl=cl: cl.classify([array], model=name))
        blocks["in-process direct preprocess+classify (hot loop)"] = c.sync_block(
            lambda: model.classify([model.preprocess(raw)], k)
        )
        blocks["in-process direct, each after an echo RPC (cold)"] = c.between_block(
            lambda: model.classify([model.preprocess(raw)], k), lambda: call(payload)
        )
        print(f"sequential: {args.requests} requests per configuration, {len(blocks)} configurations", file=sys.stderr)
        samples = c.interleaved(blocks, requests=args.requests, warmup=args.warmup, rounds=args.rounds, monitor=monitor)
        sequential = {k: c.summarize(v) for k, v in samples.items()}

        throughput: dict[str, Any] = {}
        if trivial:
            print(f"throughput: {args.throughput_requests} requests, {args.concurrency} in flight", file=sys.stderr)
            throughput = asyncio.run(measure_throughput(servers, name, array, args, monitor, AsyncClient))
        noise = monitor.sample()
        timing_stack.close()  # the instrumented server writes its timings at exit
        server_side = json.loads(timing_file.read_text())
        if loaded is not None:
            c.unload_in_process(loop, loaded)

    report = build_report(args, sequential, server_side, throughput, noise)
    print(report)
    if not args.no_write:
        path = c.write_results(
            f"breakdown-{args.model}",
            {
                "machine": c.machine_info(args.torch_threads),
                "args": vars(args),
                "sequential_us": sequential,
                "server_side_us": server_side,
                "throughput": throughput,
                "noise": noise,
                "others_before_start_cores": quiet,
                "markdown": report,
            },
        )
        print(f"\nresults: {path.relative_to(c.ROOT)}", file=sys.stderr)
    return 0


async def measure_throughput(servers, name, array, args, monitor, AsyncClient) -> dict[str, Any]:  # noqa: N803
    clients = {label: AsyncClient(s.address) for label, s in servers.items()}
    acc = {label: {"n": 0, "wall": 0.0, "cpu": 0.0} for label in servers}
    for cl in clients.values():
        await c.run_concurrent(
            lambda cl=cl: cl.classify([array], model=name), concurrency=args.concurrency, requests=200
        )
    per_round = args.throughput_requests // args.rounds

    async def one_round() -> dict[str, tuple[float, int, float]]:
        out = {}
        for label, cl in clients.items():
            gc.collect()
            cpu0 = servers[label].cpu_seconds()
            wall, lat = await c.run_concurrent(
                lambda cl=cl: cl.classify([array], model=name), concurrency=args.concurrency, requests=per_round
            )
            out[label] = (wall, len(lat), servers[label].cpu_seconds() - cpu0)
        return out

    for _ in range(args.rounds):
        for label, (wall, n, cpu) in (await monitor.guard_async(one_round)).items():
            acc[label]["cpu"] += cpu
            acc[label]["n"] += n
            acc[label]["wall"] += wall
    for cl in clients.values():
        await cl.close()
    return {
        label: {"req_per_s": a["n"] / a["wall"], "server_cpu_us_per_req": a["cpu"] / a["n"] * 1e6}
        for label, a in acc.items()
    }


def build_report(args, sequential, server_side, throughput, noise) -> str:
    floor = sequential["echo floor"]["p50_us"]
    stock = sequential["stock server"]["p50_us"]
    lines = [
        c.noise_line(noise),
        "",
        f"### Sequential Client.classify, {args.model} (n={args.requests} each, torch threads {args.torch_threads})",
        "",
    ]
    rows = [[k, v["p50_us"], v["p99_us"], v["p50_us"] - floor, v["p50_us"] - stock] for k, v in sequential.items()]
    lines.append(c.table(["server", "p50 µs", "p99 µs", "p50 − floor µs", "p50 − stock µs"], rows))
    if CANNED in sequential:
        steps = [
            ("bare grpc.aio echo of raw bytes (the floor)", "echo floor"),
            ("+ protobuf and a Python aio servicer (grpc's Health.Check in the modelplex process)", HEALTH),
            ("+ the Classify servicer's own code: proto → RawTensor, validation, response (--canned)", CANNED),
            ("+ the model, run on the event loop (--servicer-direct)", DIRECT),
            ("+ the batch queue and the hop to the instance's thread and back (stock server)", "stock server"),
        ]
        lines += ["", "### The ladder: what each layer adds (p50, µs)", ""]
        rows, prev = [], None
        for label, key in steps:
            p50 = sequential[key]["p50_us"]
            rows.append([label, p50, "" if prev is None else p50 - prev])
            prev = p50
        rows.append(
            [
                "(for comparison) stock, with the design before 0e15c68",
                sequential[ASYNCIO]["p50_us"],
                sequential[ASYNCIO]["p50_us"] - stock,
            ]
        )
        lines.append(c.table(["layer", "p50 µs", "adds µs"], rows))
    inst = sequential["instrumented (--timing)"]["p50_us"]
    sv, rt, rb = (server_side[k]["p50_us"] for k in ("servicer", "runtime.classify", "worker._run_batch"))
    lines += ["", "### Inside the instrumented server (p50 of each span, µs)", ""]
    lines.append(
        c.table(
            ["span", "p50 µs", "share of client p50"],
            [
                ["client round trip (instrumented server)", inst, "100%"],
                [
                    "outside the servicer method: gRPC, transport, client, protobuf (de)serialization",
                    inst - sv,
                    f"{(inst - sv) / inst:.0%}",
                ],
                [
                    "servicer method minus runtime.classify: proto → RawTensor, response building",
                    sv - rt,
                    f"{(sv - rt) / inst:.0%}",
                ],
                [
                    "runtime.classify minus _run_batch: validation, queue, hop to the worker thread and back",
                    rt - rb,
                    f"{(rt - rb) / inst:.0%}",
                ],
                ["worker _run_batch: preprocess + classify", rb, f"{rb / inst:.0%}"],
            ],
        )
    )
    if throughput:
        lines += ["", f"### Throughput, {args.concurrency} in flight (AsyncClient, n={args.throughput_requests})", ""]
        lines.append(
            c.table(
                ["server", "req/s", "server CPU µs/req"],
                [[k, v["req_per_s"], v["server_cpu_us_per_req"]] for k, v in throughput.items()],
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

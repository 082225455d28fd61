"""modelplex against its peers, MLServer and Triton (PyTriton), measured in the same run.

One harness, one client side for every server: grpc.aio channels with raw (bytes) methods,
each request serialized once before timing, responses not parsed while timed. Every server
runs in its own process (the peers with all the processes they start: their CPU time is the
whole family's); the client runs in this process, on the same cores.

1. The trivial model, the example plugin's ``dominant-color`` (per-channel mean of a (3, 32, 32)
   FLOAT32 tensor, a 3 x 3 mix, softmax; torch 1 thread everywhere), so that what is measured
   is the server:

   * the floor: ``echo_server.py`` echoing a payload as big as the ModelInfer request;
   * modelplex: typed ``Classify`` and the Open Inference Protocol's ``ModelInfer``;
   * MLServer: ``ModelInfer`` to a custom ``MLModel`` running the same torch code
     (``benchmarks/peers/``), with inference in a worker process (``parallel_workers=1``,
     its default) and in the server process (``parallel_workers=0``);
   * PyTriton: ``ModelInfer`` to Triton, whose Python backend hands the request to the same
     torch code in PyTriton's process.

   Sequential (1 in flight, p50) in interleaved rounds, then 8 in flight (req/s, server CPU
   per request), also interleaved.

2. resnet18 (random weights, batch 1, (3, 224, 224) FLOAT32; torch 2 threads by default) on
   modelplex (Classify, ModelInfer), MLServer and PyTriton, each against the bare forward
   ``net(x[None])`` in this process, in the same rounds.

Every server's answer is checked against the in-process model before anything is timed.

The peers live in their own virtual environment, never the project's: ``--setup`` (or the
first run) creates ``benchmarks/.peers-venv`` with the pinned versions of ``PINS`` (torch from
this machine's wheels when it has them) and prints what it installed.

    python benchmarks/bench_peers.py --setup                # once (~3 min)
    python benchmarks/bench_peers.py --wait-quiet 30        # ~4 min on a quiet machine
    python benchmarks/bench_peers.py --quick --no-pytriton  # ~2 min
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402
from _peers import OIP, PINS, Served, ensure_venv, modelplex, served, setup_venv, start_peers  # noqa: E402

CLASSIFY = "/modelplex.v1.ImageClassification/Classify"
OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
COLOR = ("dominant-color", (3, 32, 32), {"spec": "dominant-color", "weights": "random", "devices": ["cpu"]})
RESNET = ("resnet18", (3, 224, 224), {"spec": "resnet18", "name": "resnet18", "weights": "random",
                                      "devices": ["cpu"], "max_batch_size": 1})  # fmt: skip
FLOOR = "echo floor (grpc.aio raw bytes)"
MP_TYPED, MP_OIP = "modelplex Classify (typed)", "modelplex ModelInfer (OIP)"
IN_PROCESS = "in-process forward net(x[None])"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setup", action="store_true", help="(re)install the peers' virtual environment, then exit")
    p.add_argument("--venv", type=Path, default=c.BENCH_DIR / ".peers-venv", help="the peers' virtual environment")
    p.add_argument("--no-pytriton", action="store_true", help="leave PyTriton out")
    p.add_argument("--no-resnet", action="store_true", help="only the trivial model")
    p.add_argument("--quick", action="store_true", help="fewer requests (~2 min)")
    p.add_argument("--requests", type=int, help="sequential requests per configuration (default 1000; quick 200)")
    p.add_argument("--warmup", type=int, default=100, help="untimed requests per configuration first")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the requests are split in")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight for the throughput test")
    p.add_argument("--throughput-requests", type=int, help="per configuration (default 4000; quick 800)")
    p.add_argument("--resnet-requests", type=int, help="sequential resnet18 requests per configuration (100; quick 30)")
    p.add_argument("--resnet-threads", type=int, default=os.cpu_count() or 1, help="torch threads for resnet18")
    c.add_run_arguments(p)
    args = p.parse_args()
    args.requests = args.requests or (200 if args.quick else 1000)
    args.throughput_requests = args.throughput_requests or (800 if args.quick else 4000)
    args.resnet_requests = args.resnet_requests or (30 if args.quick else 100)
    if args.quick:
        args.warmup = min(args.warmup, 50)
    return args


# -- requests, answers and timing --------------------------------------------------------------------


def oip_request(model: str, array: Any) -> bytes:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="pixel_values", datatype="FP32", shape=[1, *array.shape])
    request.raw_input_contents.append(array.tobytes())
    return request.SerializeToString()


def answer_indices(method: str, response: bytes) -> list[int]:
    """The class indices of a Classify or ModelInfer answer."""
    import numpy as np
    from tritonclient.grpc import service_pb2

    from modelplex_client.pb import image_classification_pb2

    if method == CLASSIFY:
        classes = image_classification_pb2.ClassifyResponse.FromString(response).results[0].classes
        return [k.index for k in classes]
    out = service_pb2.ModelInferResponse.FromString(response)
    names = [o.name for o in out.outputs]
    return np.frombuffer(out.raw_output_contents[names.index("indices")], dtype="<i8").tolist()


Call = Callable[[], Awaitable[object]]


def raw_calls(
    loop: asyncio.AbstractEventLoop, targets: dict[str, tuple[Served, str, bytes]]
) -> tuple[dict[str, Call], Callable[[], None]]:
    """A raw grpc.aio call per target (its own channel, request bytes built once), and a
    closer for the channels."""
    from grpc import aio

    async def make() -> tuple[dict[str, Call], list[aio.Channel]]:
        channels, calls = [], {}
        for name, (server, method, request) in targets.items():
            channels.append(aio.insecure_channel(server.address, options=OPTIONS))
            calls[name] = bound(channels[-1].unary_unary(method), request)
        return calls, channels

    async def close() -> None:
        await asyncio.gather(*(ch.close() for ch in channels))

    calls, channels = loop.run_until_complete(make())
    return calls, lambda: loop.run_until_complete(close())


def bound(method: Callable[[bytes], Awaitable[object]], request: bytes) -> Call:
    return lambda: method(request)


def check_answers(
    loop: asyncio.AbstractEventLoop, calls: dict[str, Call], targets: dict[str, tuple[Served, str, bytes]], check
) -> None:
    for name, call in calls.items():
        method = targets[name][1]
        if method in (OIP, CLASSIFY):
            got = answer_indices(method, loop.run_until_complete(call()))  # type: ignore[arg-type]
            if not check(got):
                raise AssertionError(f"{name} answered {got}")


def idle_cores(servers: list[Served], seconds: float = 3.0) -> dict[str, float]:
    """The cores each server's processes use while no request comes."""
    before = {s.name: s.cpu_seconds() for s in servers}
    time.sleep(seconds)
    return {s.name: round((s.cpu_seconds() - before[s.name]) / seconds, 3) for s in servers}


def start_measuring(servers: dict[str, Served], args: argparse.Namespace) -> tuple[dict[str, float], c.NoiseMonitor]:
    """The servers' idle CPU, then a noise monitor that counts every process of theirs as ours
    (and, with ``--wait-quiet``, waits for the others to go idle)."""
    unique = list({s.name: s for s in servers.values()}.values())
    idle = idle_cores(unique)
    monitor = c.NoiseMonitor(max_wait=args.wait_quiet)
    monitor.pids.update(pid for s in unique for pid in s.family)
    monitor.start(*unique)
    return idle, monitor


async def throughput(
    calls: dict[str, Call], servers: dict[str, Served], args: argparse.Namespace, monitor: c.NoiseMonitor
) -> dict[str, Any]:
    """``args.concurrency`` in flight per configuration, interleaved rounds, with the CPU time
    this process and the server's processes spent."""
    for call in calls.values():
        await c.run_concurrent(call, concurrency=args.concurrency, requests=min(200, args.throughput_requests))
    per_round = max(args.concurrency, args.throughput_requests // args.rounds)
    rounds: dict[str, list[tuple[float, list[float], float, float]]] = {name: [] for name in calls}

    async def one_round(order: list[str]) -> dict[str, tuple[float, list[float], float, float]]:
        out = {}
        for name in order:
            gc.collect()
            client0, server0 = c.self_cpu_seconds(), servers[name].cpu_seconds()
            wall, latencies = await c.run_concurrent(calls[name], concurrency=args.concurrency, requests=per_round)
            out[name] = (wall, latencies, c.self_cpu_seconds() - client0, servers[name].cpu_seconds() - server0)
            await asyncio.sleep(0.02)
        return out

    for r in range(args.rounds):
        for name, result in (await monitor.guard_async(lambda r=r: one_round(c.alternate(list(calls), r)))).items():
            rounds[name].append(result)
    out: dict[str, Any] = {}
    for name, rs in rounds.items():
        n, wall = sum(len(r[1]) for r in rs), sum(r[0] for r in rs)
        out[name] = {
            "requests": n,
            "req_per_s": n / wall,
            "req_per_s_rounds": [len(r[1]) / r[0] for r in rs],
            **c.summarize([r[1] for r in rs]),
            "client_cpu_us_per_req": sum(r[2] for r in rs) / n * 1e6,
            "server_cpu_us_per_req": sum(r[3] for r in rs) / n * 1e6,
            "server_cpu_us_per_req_rounds": [r[3] / len(r[1]) * 1e6 for r in rs],
        }
    return out


# -- the two parts ------------------------------------------------------------------------------------


def trivial_part(args: argparse.Namespace, wd: Path, site: Path, failed: dict[str, str]) -> dict[str, Any]:
    from echo_server import METHOD

    model_name, shape, entry = COLOR
    array, raw, typed, _ = c.classify_inputs(shape, model_name, 1)
    oip = oip_request(model_name, array)
    model = c.build_in_process(entry)
    expected = [k.index for k in model.classify([model.preprocess(raw)], 3)[0]]
    with contextlib.ExitStack() as stack:
        echo = stack.enter_context(served(c.echo_server(wd), None))
        mp = stack.enter_context(modelplex(wd, site, entry, 1))
        targets = {FLOOR: (echo, METHOD, b"x" * len(oip)), MP_TYPED: (mp, CLASSIFY, typed.SerializeToString()),
                   MP_OIP: (mp, OIP, oip)}  # fmt: skip
        peers = start_peers(stack, wd, args, model_name, 1, failed)
        targets |= {name: (server, OIP, oip) for name, server in peers.items()}
        servers = {name: t[0] for name, t in targets.items()}
        loop = asyncio.new_event_loop()
        calls, close = raw_calls(loop, targets)
        check_answers(loop, calls, targets, lambda got: got == expected)
        idle, monitor = start_measuring(servers, args)
        print(f"dominant-color, sequential: {args.requests} requests per configuration", file=sys.stderr)
        blocks = {name: c.async_block(loop, call) for name, call in calls.items()}
        samples = c.interleaved(blocks, requests=args.requests, warmup=args.warmup, rounds=args.rounds, monitor=monitor)
        print(f"dominant-color, {args.concurrency} in flight: {args.throughput_requests} requests", file=sys.stderr)
        rates = loop.run_until_complete(throughput(calls, servers, args, monitor))
        noise = monitor.sample()
        metadata = {s.name: server_metadata(s.address) for s in servers.values() if s is not echo}
        close()
        loop.close()
    return {
        "request_bytes": len(oip),
        "sequential_us": {name: c.summarize(s) for name, s in samples.items()},
        "throughput": rates,
        "idle_cores": idle,
        "processes": {s.name: len(s.family) for s in servers.values()},
        "server_metadata": metadata,
        "imports": {s.name: s.imports for s in servers.values() if s.imports},
        "noise": noise,
    }


def resnet_part(args: argparse.Namespace, wd: Path, site: Path, failed: dict[str, str]) -> dict[str, Any]:
    import torch

    model_name, shape, entry = RESNET
    threads = args.resnet_threads
    array, raw, typed, _ = c.classify_inputs(shape, model_name, threads)
    oip = oip_request(model_name, array)
    model = c.build_in_process(entry)
    net, x = model._model, model.preprocess(raw)

    def forward() -> object:
        with torch.inference_mode():
            return net(x[None])

    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(modelplex(wd, site, entry, threads))
        targets = {MP_TYPED: (mp, CLASSIFY, typed.SerializeToString()), MP_OIP: (mp, OIP, oip)}
        peers = start_peers(stack, wd, args, model_name, threads, failed)
        targets |= {name: (server, OIP, oip) for name, server in peers.items()}
        servers = {name: t[0] for name, t in targets.items()}
        loop = asyncio.new_event_loop()
        calls, close = raw_calls(loop, targets)
        check_answers(loop, calls, targets, lambda got: len(got) == 5 and all(0 <= i < 1000 for i in got))
        idle, monitor = start_measuring(servers, args)
        print(f"resnet18, sequential: {args.resnet_requests} requests per configuration", file=sys.stderr)
        blocks = {IN_PROCESS: c.sync_block(forward)} | {n: c.async_block(loop, call) for n, call in calls.items()}
        samples = c.interleaved(blocks, requests=args.resnet_requests, warmup=5, rounds=args.rounds, monitor=monitor)
        noise = monitor.sample()
        close()
        loop.close()
    return {
        "request_bytes": len(oip),
        "torch_threads": threads,
        "sequential_us": {name: c.summarize(s) for name, s in samples.items()},
        "idle_cores": idle,
        "noise": noise,
    }


def server_metadata(address: str) -> dict[str, str]:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        meta = service_pb2_grpc.GRPCInferenceServiceStub(channel).ServerMetadata(service_pb2.ServerMetadataRequest())
    return {"name": meta.name, "version": meta.version}


# -- the report ---------------------------------------------------------------------------------------


SEQ_HEADERS = ("configuration", "p50 µs", "p99 µs", "p50 − floor µs", "÷ floor", "÷ modelplex Classify",
               "÷ modelplex OIP", "per-round ÷ modelplex OIP: median (range)")  # fmt: skip
THR_HEADERS = ("configuration", "req/s", "round req/s: median (range)", "÷ floor", "÷ modelplex OIP", "p50 µs",
               "server CPU µs/req", "server CPU ÷ modelplex OIP", "client CPU µs/req")  # fmt: skip
RESNET_HEADERS = ("configuration", "p50 ms", "p99 ms", "p50 − in-process ms", "÷ in-process",
                  "per-round ÷ in-process: median (range)")  # fmt: skip


def ratio_range(a: list[float], b: list[float]) -> str:
    rs = [x / y for x, y in zip(a, b, strict=True)]
    return f"{statistics.median(rs):.2f} ({min(rs):.2f}–{max(rs):.2f})"


def trivial_report(t: dict[str, Any], args: argparse.Namespace) -> list[str]:
    seq, thr = t["sequential_us"], t["throughput"]
    floor, typed, oip = seq[FLOOR], seq[MP_TYPED], seq[MP_OIP]
    seq_rows = [
        [name, s["p50_us"], s["p99_us"], "" if name == FLOOR else s["p50_us"] - floor["p50_us"],
         f"{s['p50_us'] / floor['p50_us']:.2f}", f"{s['p50_us'] / typed['p50_us']:.2f}",
         f"{s['p50_us'] / oip['p50_us']:.2f}", ratio_range(s["p50_us_rounds"], oip["p50_us_rounds"])]
        for name, s in seq.items()
    ]  # fmt: skip
    f_rps, o_rps, o_cpu = thr[FLOOR]["req_per_s"], thr[MP_OIP]["req_per_s"], thr[MP_OIP]["server_cpu_us_per_req"]
    thr_rows = [
        [name, r["req_per_s"], c.spread(r["req_per_s_rounds"]), f"{r['req_per_s'] / f_rps:.2f}",
         f"{r['req_per_s'] / o_rps:.2f}", r["p50_us"], r["server_cpu_us_per_req"],
         f"{r['server_cpu_us_per_req'] / o_cpu:.2f}", r["client_cpu_us_per_req"]]
        for name, r in thr.items()
    ]  # fmt: skip
    return [
        f"### dominant-color: sequential, 1 in flight (n={args.requests} each in {args.rounds} interleaved rounds; "
        f"ModelInfer request {t['request_bytes']} B, the floor echoes as much)",
        "",
        c.table(SEQ_HEADERS, seq_rows),
        "",
        f"### dominant-color: {args.concurrency} in flight (one asyncio client, n={args.throughput_requests} each)",
        "",
        c.table(THR_HEADERS, thr_rows),
        "",
        "Server processes and their CPU while idle (cores): "
        + ", ".join(f"{n} {t['processes'][n]} / {v}" for n, v in t["idle_cores"].items())
        + ".",
        "",
        c.noise_line(t["noise"]),
    ]


def resnet_report(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    seq = r["sequential_us"]
    base = seq[IN_PROCESS]
    rows = [
        [name, s["p50_us"] / 1e3, s["p99_us"] / 1e3, "" if name == IN_PROCESS else (s["p50_us"] - base["p50_us"]) / 1e3,
         f"{s['p50_us'] / base['p50_us']:.2f}", ratio_range(s["p50_us_rounds"], base["p50_us_rounds"])]
        for name, s in seq.items()
    ]  # fmt: skip
    return [
        f"### resnet18, batch 1, sequential (n={args.resnet_requests} each in {args.rounds} interleaved rounds; "
        f"torch {r['torch_threads']} threads; request {r['request_bytes']} B)",
        "",
        c.table(RESNET_HEADERS, rows),
        "",
        "Server CPU while idle (cores): " + ", ".join(f"{n} {v}" for n, v in r["idle_cores"].items()) + ".",
        "",
        c.noise_line(r["noise"]),
    ]


def main() -> int:
    args = parse_args()
    if args.setup:
        setup_venv(args.venv)
        return 0
    versions = ensure_venv(args.venv)
    failed: dict[str, str] = {}
    with c.workdir() as wd:
        site = c.install_example_plugin(wd / "site")
        trivial = trivial_part(args, wd, site, failed)
        resnet = None if args.no_resnet else resnet_part(args, wd, site, failed)
    servers = ", ".join(sorted({f"{m['name']} {m['version']}" for m in trivial["server_metadata"].values()}))
    lines = [
        f"Peers' environment ({args.venv.name}): " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"Servers (OIP ServerMetadata): {servers}.",
        "",
        *trivial_report(trivial, args),
    ]
    if resnet:
        lines += ["", *resnet_report(resnet, args)]
    for what, why in failed.items():
        lines += ["", f"**{what} not measured**: {why.splitlines()[0] if why else ''}"]
    payload = {
        "machine": c.machine_info(c.trees(args), 1),
        "peer_versions": versions,
        "peer_pins": PINS,
        "dominant_color": trivial,
        "resnet18": resnet,
        "not_measured": failed,
    }
    c.finish("peers", args, "\n".join(lines), payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())

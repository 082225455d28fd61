"""Per-request server overhead of modelplex with a trivial model.

The model is the example plugin's ``dominant-color`` with ``size = 1``: its input is a
raw FLOAT32 tensor of shape (3, 1, 1) and its work is a mean and a softmax over 3
numbers, so what is measured is the server, not the model.

Measured, sequentially (one request at a time, sync client, p50/p99):

* the floor: a bare grpc.aio echo server of raw bytes (generic handler, no
  (de)serializers) in its own process, echoing a payload as big as the Classify request;
* modelplex Health.Check (grpc's health servicer in the modelplex process: the cost of
  the modelplex server process and protobuf, without modelplex's own code);
* modelplex Classify with a raw grpc stub (request built once) and with the sync
  ``modelplex_client.Client`` (builds the request from a numpy array on every call);
* in this process, without gRPC: ``runtime.classify`` (validation, the batch queue and
  the hop to the instance's worker thread, preprocess + classify) and the direct call
  ``model.classify([model.preprocess(tensor)], top_k)`` of the same model object.

Then throughput with 8 requests in flight from one asyncio client, for the echo floor,
a raw grpc.aio stub and ``AsyncClient``, with the CPU time the client and the server
processes spent per request.

The server runs as ``python -m modelplex.server.cli --config <toml> --port 0`` in its
own process; client and server share this machine's cores.

    python benchmarks/bench_overhead.py            # ~30 s
    python benchmarks/bench_overhead.py --quick    # ~10 s
    python benchmarks/bench_overhead.py --profile  # + py-spy profile of the server
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

MODEL = "dominant-color"
CONFIG = f"""
[server]
log_level = "warning"

[[models]]
spec = "{MODEL}"
weights = "random"
devices = ["cpu"]
settings = {{ size = 1 }}
"""
SHAPE = (3, 1, 1)

PEERS = {
    "floor (bare grpc, 2 cores, loopback)": {"p50_ms": 0.44},
    "MLServer": {"p50_ms": 1.0, "req_s_8_in_flight": 1500},
    "TorchServe": {"p50_ms": 1.3},
    "Triton": {"p50_ms": 2.6},
    "modelplex target": {"p50_over_floor_ms": 0.15},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="modelplex per-request overhead with a trivial model")
    p.add_argument("--quick", action="store_true", help="fewer requests (~10 s)")
    p.add_argument("--requests", type=int, help="sequential requests per configuration (default 1000; quick 200)")
    p.add_argument("--warmup", type=int, default=100, help="untimed requests per configuration first")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the sequential requests are split in")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight for the throughput test")
    p.add_argument("--throughput-requests", type=int, help="requests per throughput test (default 4000; quick 800)")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads, in the server (OMP_NUM_THREADS) and in this process (default 1: "
        "the model's tensors are 3 numbers, more threads only compete with the client)",
    )
    p.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=5,
        default=None,
        metavar="SECONDS",
        help="also record the server with py-spy for SECONDS (default 5) of sequential Client calls",
    )
    c.add_run_arguments(p)
    args = p.parse_args()
    if args.requests is None:
        args.requests = 200 if args.quick else 1000
    if args.throughput_requests is None:
        args.throughput_requests = 800 if args.quick else 4000
    if args.quick:
        args.warmup = min(args.warmup, 50)
    return args


def main() -> int:
    args = parse_args()
    import grpc
    import numpy as np
    import torch
    from echo_server import METHOD
    from grpc import aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from modelplex.tasks import RawTensor
    from modelplex_client import AsyncClient, Client
    from modelplex_client._requests import channel_options
    from modelplex_client.pb import common_pb2
    from modelplex_client.pb import image_classification_pb2 as pb
    from modelplex_client.pb import image_classification_pb2_grpc as pb_grpc

    torch.set_num_threads(args.torch_threads)
    array = np.array([0.9, 0.2, 0.1], dtype=np.float32).reshape(SHAPE)
    raw = RawTensor(SHAPE, "float32", array.tobytes())
    request = pb.ClassifyRequest(
        model=MODEL,
        images=[
            pb.Image(tensor=common_pb2.Tensor(shape=list(SHAPE), dtype=common_pb2.DATA_TYPE_FLOAT32, data=raw.data))
        ],
    )
    payload = b"x" * request.ByteSize()
    options = channel_options(64)

    with c.workdir() as wd:
        site = c.install_example_plugin(wd / "site")
        loop = asyncio.new_event_loop()
        loaded = c.load_in_process(
            loop, {"spec": MODEL, "weights": "random", "devices": ["cpu"], "settings": {"size": 1}}
        )
        model, runtime = loaded.instances[0].model, loaded.runtime
        expected = [s.label for s in model.classify([model.preprocess(raw)], 3)[0]]

        with (
            c.echo_server(wd) as echo,
            c.modelplex_server(wd, CONFIG, pythonpath=[site], torch_threads=args.torch_threads) as server,
        ):
            echo_channel = grpc.insecure_channel(echo.address, options=options)
            echo_call = echo_channel.unary_unary(METHOD)
            client = Client(server.address)
            channel = grpc.insecure_channel(server.address, options=options)
            stub = pb_grpc.ImageClassificationStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            health_request = health_pb2.HealthCheckRequest(service="")

            response = stub.Classify(request)
            assert [s.label for s in response.results[0].classes] == expected, response
            assert [s.label for s in client.classify([array], model=MODEL)[0]] == expected
            assert echo_call(payload) == payload
            sizes = {
                "request_bytes": request.ByteSize(),
                "response_bytes": response.ByteSize(),
                "echo_payload_bytes": len(payload),
            }

            monitor = c.NoiseMonitor(max_wait=args.wait_quiet)
            monitor.add(server.pid)
            monitor.add(echo.pid)
            quiet = c.wait_for_quiet(args.wait_quiet, pids=monitor.pids) if args.wait_quiet else None
            monitor.restart()  # the noise figures cover the measurement, not the wait
            blocks = {
                "echo floor (grpc.aio raw bytes)": c.sync_block(lambda: echo_call(payload)),
                "modelplex Health.Check (raw stub)": c.sync_block(lambda: health.Check(health_request)),
                "modelplex Classify (raw stub)": c.sync_block(lambda: stub.Classify(request)),
                "modelplex Classify (Client.classify)": c.sync_block(lambda: client.classify([array], model=MODEL)),
                "in-process runtime.classify (no gRPC)": c.async_block(loop, lambda: runtime.classify([raw], 0)),
                "in-process direct preprocess+classify (hot loop)": c.sync_block(
                    lambda: model.classify([model.preprocess(raw)], 3)
                ),
                "in-process direct, each after an echo RPC (cold)": c.between_block(
                    lambda: model.classify([model.preprocess(raw)], 3), lambda: echo_call(payload)
                ),
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

            print(f"throughput: {args.throughput_requests} requests, {args.concurrency} in flight", file=sys.stderr)
            throughput = asyncio.run(
                measure_throughput(
                    echo, server, payload, request, array, args, monitor, AsyncClient, aio, pb_grpc, METHOD
                )
            )

            noise = monitor.sample()
            profile = None
            if args.profile:
                profile = profile_server(server, client, array, args.profile, wd)

            client.close()
            channel.close()
            echo_channel.close()
        c.unload_in_process(loop, loaded)

    floor = sequential["echo floor (grpc.aio raw bytes)"]
    report = build_report(sequential, throughput, floor, args, sizes, profile, noise)
    print(report)
    if not args.no_write:
        path = c.write_results(
            "overhead",
            {
                "machine": c.machine_info(args.torch_threads),
                "args": vars(args),
                "sizes": sizes,
                "sequential_us": sequential,
                "throughput": throughput,
                "peers": PEERS,
                "profile": profile,
                "noise": noise,
                "others_before_start_cores": quiet,
                "markdown": report,
            },
        )
        print(f"\nresults: {path.relative_to(c.ROOT)}", file=sys.stderr)
    return 0


async def measure_throughput(echo, server, payload, request, array, args, monitor, AsyncClient, aio, pb_grpc, METHOD):  # noqa: N803
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    echo_channel = aio.insecure_channel(echo.address, options=options)
    echo_call = echo_channel.unary_unary(METHOD)
    channel = aio.insecure_channel(server.address, options=options)
    stub = pb_grpc.ImageClassificationStub(channel)
    client = AsyncClient(server.address)
    configs = {
        "echo floor (grpc.aio raw bytes)": (echo, lambda: echo_call(payload)),
        "modelplex Classify (raw aio stub)": (server, lambda: stub.Classify(request)),
        "modelplex Classify (AsyncClient.classify)": (server, lambda: client.classify([array], model=MODEL)),
    }
    for _, call in configs.values():  # warm every path up first
        await c.run_concurrent(call, concurrency=args.concurrency, requests=min(200, args.throughput_requests))
    acc: dict[str, dict[str, Any]] = {
        name: {"wall": 0.0, "lat": [], "cpu_client": 0.0, "cpu_server": 0.0, "rounds": []} for name in configs
    }
    per_round = max(args.concurrency, args.throughput_requests // args.rounds)

    async def one_round() -> dict[str, tuple[float, list[float], float, float]]:
        out = {}
        for name, (proc, call) in configs.items():
            gc.collect()
            cpu_client0, cpu_server0 = c.self_cpu_seconds(), proc.cpu_seconds()
            wall, latencies = await c.run_concurrent(call, concurrency=args.concurrency, requests=per_round)
            out[name] = (wall, latencies, c.self_cpu_seconds() - cpu_client0, proc.cpu_seconds() - cpu_server0)
        return out

    for _ in range(args.rounds):  # interleaved, like the sequential test
        for name, (wall, latencies, cpu_client, cpu_server) in (await monitor.guard_async(one_round)).items():
            a = acc[name]
            a["cpu_client"] += cpu_client
            a["cpu_server"] += cpu_server
            a["wall"] += wall
            a["lat"] += latencies
            a["rounds"].append(len(latencies) / wall)
    out: dict[str, Any] = {}
    for name, a in acc.items():
        n = len(a["lat"])
        out[name] = {
            "requests": n,
            "concurrency": args.concurrency,
            "wall_s": a["wall"],
            "req_per_s": n / a["wall"],
            "req_per_s_rounds": a["rounds"],
            **c.summarize(a["lat"]),
            "client_cpu_us_per_req": a["cpu_client"] / n * 1e6,
            "server_cpu_us_per_req": a["cpu_server"] / n * 1e6,
        }
    await client.close()
    await channel.close()
    await echo_channel.close()
    return out


def profile_server(server, client, array, seconds: float, wd: Path) -> dict[str, Any] | None:
    """Sample the server process with py-spy while a sync client sends requests back to back."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy is not installed (pip install py-spy); skipping the profile", file=sys.stderr)
        return None
    out = wd / "profile.txt"
    rec = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(server.pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "997",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    n = 0
    while rec.poll() is None:
        client.classify([array], model=MODEL)
        n += 1
    if rec.returncode != 0 or not out.exists():
        print(f"py-spy failed: {rec.stderr.read() if rec.stderr else ''}", file=sys.stderr)
        return None
    profile = summarize_profile(out.read_text())
    profile["requests"] = n
    dest = c.RESULTS_DIR / "overhead-server-profile.txt"
    c.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, dest)
    profile["collapsed_stacks"] = str(dest.relative_to(c.ROOT))
    return profile


def _frame_key(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"


def summarize_profile(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample counts by function, per thread, from py-spy's raw output."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0]] += n
        keys = [_frame_key(f) for f in frames[1:]] or [frames[0]]
        self_counts[keys[-1]] += n
        for k in set(keys):
            incl_counts[k] += n
    pct = lambda k: round(100.0 * k / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "threads": {t: pct(n) for t, n in threads.most_common()},
        "self_pct": {k: pct(n) for k, n in self_counts.most_common(top)},
        "inclusive_pct": {k: pct(n) for k, n in incl_counts.most_common(top * 2)},
    }


def build_report(sequential, throughput, floor, args, sizes, profile, noise) -> str:
    lines = [
        c.noise_line(noise),
        "",
        f"### Sequential round trip, dominant-color size 1 "
        f"(n={args.requests} each, torch threads {args.torch_threads})",
        "",
        f"Request {sizes['request_bytes']} B, response {sizes['response_bytes']} B; "
        f"the echo floor carries {sizes['echo_payload_bytes']} B each way.",
        "",
    ]
    rows = []
    for name, s in sequential.items():
        rows.append(
            [name, s["p50_us"], s["p99_us"], s["mean_us"], s["p50_us"] - floor["p50_us"], s["p99_us"] - floor["p99_us"]]
        )
    lines.append(c.table(["configuration", "p50 µs", "p99 µs", "mean µs", "p50 − floor µs", "p99 − floor µs"], rows))
    lines += [
        "",
        f"### Throughput, {args.concurrency} in flight (one asyncio client, n={args.throughput_requests})",
        "",
    ]
    rows = []
    for name, t in throughput.items():
        spread = f"{min(t['req_per_s_rounds']):,.0f}–{max(t['req_per_s_rounds']):,.0f}"
        rows.append(
            [
                name,
                t["req_per_s"],
                spread,
                t["p50_us"],
                t["p99_us"],
                t["client_cpu_us_per_req"],
                t["server_cpu_us_per_req"],
            ]
        )
    lines.append(
        c.table(
            ["configuration", "req/s", "req/s per round", "p50 µs", "p99 µs", "client CPU µs/req", "server CPU µs/req"],
            rows,
        )
    )
    mp = sequential["modelplex Classify (Client.classify)"]
    stub = sequential["modelplex Classify (raw stub)"]
    tput = throughput["modelplex Classify (AsyncClient.classify)"]["req_per_s"]
    lines += ["", "### Against the peers (their numbers: 2 cores, loopback, their own floor 0.44 ms)", ""]
    rows = [
        [
            "bare grpc floor",
            floor["p50_us"] / 1e3,
            0.0,
            f"{throughput['echo floor (grpc.aio raw bytes)']['req_per_s']:,.0f}",
            "0.44 ms",
        ],
        [
            "modelplex, Client.classify",
            mp["p50_us"] / 1e3,
            (mp["p50_us"] - floor["p50_us"]) / 1e3,
            f"{tput:,.0f}",
            "this run",
        ],
        ["modelplex, raw stub", stub["p50_us"] / 1e3, (stub["p50_us"] - floor["p50_us"]) / 1e3, "", "this run"],
        ["modelplex target", "", 0.15, "", "brief"],
        ["MLServer", 1.0, 1.0 - 0.44, "1,500", "peer"],
        ["TorchServe", 1.3, 1.3 - 0.44, "", "peer"],
        ["Triton", 2.6, 2.6 - 0.44, "", "peer"],
    ]
    lines.append(
        c.table(["server", "p50 ms", "p50 − floor ms", f"req/s, {args.concurrency} in flight", "source"], rows)
    )
    if profile:
        lines += ["", f"### Server profile (py-spy, {profile['samples']} samples, {profile['requests']} requests)", ""]
        lines.append(c.table(["thread", "% of samples"], list(profile["threads"].items())))
        lines.append("")
        lines.append(c.table(["function (self)", "% of samples"], list(profile["self_pct"].items())))
        lines.append("")
        lines.append(c.table(["function (inclusive)", "% of samples"], list(profile["inclusive_pct"].items())))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

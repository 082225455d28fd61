"""What a 602 KB tensor request costs besides the model: client request building and server copies.

The model is dominant-color with ``size = 224``: a (3, 224, 224) FLOAT32 tensor in
(602,112 bytes), a mean over it as the whole model, so the transfer and the copies
show. Measured sequentially, in interleaved rounds, against a server in its own process:

* the floor: a bare grpc.aio server that takes the 602 KB and answers 64 bytes;
* a raw stub with the request built once (what the server costs);
* a raw stub building the request per call with the client's ``classify_request``
  (what ``Client.classify(array)`` does: Tensor, then Image, then ClassifyRequest,
  each constructor copying the 602 KB again), and building it in place instead
  (``req.images.add().tensor`` filled once);
* each builder alone, timed after an untimed call, as it runs in a real client.

Run it a second time with ``MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=268435456``
in the environment to see how much of that is glibc handing 602 KB blocks back to the
kernel and page-faulting them in again on every request.

    python benchmarks/bench_big_tensor.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

TOML = """[server]
log_level = "warning"

[[models]]
spec = "dominant-color"
weights = "random"
devices = ["cpu"]
settings = { size = 224 }
"""
MODEL = "dominant-color"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--requests", type=int, help="per configuration (default 1000; quick 200)")
    p.add_argument("--rounds", type=int, default=5)
    c.add_run_arguments(p)
    args = p.parse_args()
    args.requests = args.requests or (200 if args.quick else 1000)

    import grpc
    import numpy as np
    from echo_server import SINK

    from modelplex_client._requests import channel_options, classify_request
    from modelplex_client.pb import common_pb2
    from modelplex_client.pb import image_classification_pb2 as pb
    from modelplex_client.pb import image_classification_pb2_grpc as pb_grpc

    array = np.random.default_rng(0).random((3, 224, 224), dtype=np.float32)

    def in_place(a: np.ndarray) -> pb.ClassifyRequest:
        req = pb.ClassifyRequest(model=MODEL)
        t = req.images.add().tensor
        t.shape.extend(a.shape)
        t.dtype = common_pb2.DATA_TYPE_FLOAT32
        t.data = np.ascontiguousarray(a, dtype="<f4").tobytes()
        return req

    prebuilt = classify_request([array], MODEL, 0, "")
    assert in_place(array) == prebuilt
    payload = prebuilt.SerializeToString()
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}

    with c.workdir() as wd:
        site = c.install_example_plugin(wd / "site")
        with c.echo_server(wd) as echo, c.modelplex_server(wd, TOML, pythonpath=[site], torch_threads=1) as server:
            sink = grpc.insecure_channel(echo.address, options=channel_options(64)).unary_unary(SINK)
            stub = pb_grpc.ImageClassificationStub(grpc.insecure_channel(server.address, options=channel_options(64)))
            blocks = {
                "floor: 602 KB up, 64 B back (echo)": c.sync_block(lambda: sink(payload)),
                "Classify, request built once": c.sync_block(lambda: stub.Classify(prebuilt)),
                "Classify, classify_request() per call (as Client does)": c.sync_block(
                    lambda: stub.Classify(classify_request([array], MODEL, 0, ""))
                ),
                "Classify, request built in place per call": c.sync_block(lambda: stub.Classify(in_place(array))),
                "classify_request() alone, after a call": c.between_block(
                    lambda: classify_request([array], MODEL, 0, ""), lambda: stub.Classify(prebuilt)
                ),
                "in-place build alone, after a call": c.between_block(
                    lambda: in_place(array), lambda: stub.Classify(prebuilt)
                ),
            }
            monitor = c.NoiseMonitor(max_wait=args.wait_quiet)
            monitor.add(server.pid)
            monitor.add(echo.pid)
            samples = c.interleaved(blocks, requests=args.requests, warmup=50, rounds=args.rounds, monitor=monitor)
            noise = monitor.sample()
    stats = {k: c.summarize(v) for k, v in samples.items()}
    env = ", ".join(f"{k}={v}" for k, v in malloc.items()) or "default glibc malloc settings"
    lines = [c.noise_line(noise), "", f"### 602 KB tensor requests, sequential (n={args.requests} each; {env})", ""]
    lines.append(
        c.table(["configuration", "p50 µs", "p99 µs"], [[k, v["p50_us"], v["p99_us"]] for k, v in stats.items()])
    )
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        path = c.write_results(
            "big-tensor",
            {
                "machine": c.machine_info(1),
                "args": vars(args),
                "malloc_env": malloc,
                "sequential_us": stats,
                "noise": noise,
                "markdown": report,
            },
        )
        print(f"\nresults: {path.relative_to(c.ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Open Inference Protocol's generic path against the typed API, on the same model and server.

The model is the example plugin's ``dominant-color`` (a trivial model: what is measured is
the protocol path, not the model), its input one raw FLOAT32 tensor of shape (3, 32, 32);
``--model resnet18`` (random weights, (3, 224, 224)) shows the same on a real network.
One server process serves it; the clients run in this process.

Sequential, one request at a time (p50/p99), in interleaved rounds:

* typed ``Classify`` with a raw grpc stub (request built once), and with
  ``modelplex_client.Client.classify(array)``;
* OIP ``ModelInfer`` (the tensor as ``raw_input_contents``, input ``pixel_values``) with a raw
  grpc stub (request built once), and with tritonclient's ``InferenceServerClient.infer``
  (``InferInput.set_data_from_numpy`` and ``as_numpy`` of every output on each call);
* in this process, without gRPC: the model's own ``classify([preprocess(tensor)], k)``.

Ratios: each against the in-process call (measured in the same run), OIP stub / typed stub
(the server's generic path) and tritonclient / the project's client (the client libraries).

tritonclient registers Triton's protos in protobuf's default pool, which the project's own
OIP module would clash with: this process uses tritonclient's stubs for both OIP rows.

    python benchmarks/bench_oip.py            # ~40 s
    python benchmarks/bench_oip.py --quick    # ~15 s
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

MODELS = {
    "dominant-color": ((3, 32, 32), {"spec": "dominant-color", "weights": "random", "devices": ["cpu"]}),
    "resnet18": ((3, 224, 224), {"spec": "resnet18", "weights": "random", "devices": ["cpu"], "max_batch_size": 1}),
}
TOP_K = 3


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="dominant-color")
    p.add_argument("--quick", action="store_true", help="fewer requests (~15 s)")
    p.add_argument("--requests", type=int, help="sequential requests per configuration (default 1000; quick 200)")
    p.add_argument("--warmup", type=int, default=50, help="untimed requests per configuration first")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the requests are split in")
    p.add_argument("--torch-threads", type=int, default=1, help="in the server and in this process (default 1)")
    c.add_run_arguments(p)
    args = p.parse_args()
    if args.requests is None:
        args.requests = (200 if args.quick else 1000) // (10 if args.model == "resnet18" else 1)
    return args


def oip_request(service_pb2: Any, model: str, array: Any) -> Any:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="pixel_values", datatype="FP32", shape=[1, *array.shape])
    request.parameters["top_k"].int64_param = TOP_K
    request.raw_input_contents.append(array.tobytes())
    return request


def main() -> None:
    args = parse_args()
    import grpc
    import numpy as np
    import tritonclient.grpc as triton
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from modelplex_client import Client
    from modelplex_client.pb import image_classification_pb2_grpc

    shape, entry = MODELS[args.model]
    entry = {**entry, "name": args.model}
    array, raw_tensor, typed_request, _ = c.classify_inputs(shape, args.model, args.torch_threads)
    typed_request.top_k = TOP_K
    monitor = c.NoiseMonitor(args.wait_quiet)
    with c.workdir() as wd:
        site = c.install_example_plugin(wd / "site")
        toml = c.config_toml(entry)
        with c.modelplex_server(wd, toml, site=site, torch_threads=args.torch_threads) as server:
            model = c.build_in_process(entry)
            channel = grpc.insecure_channel(server.address)
            typed_stub = image_classification_pb2_grpc.ImageClassificationStub(channel)
            oip_stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = oip_request(service_pb2, args.model, array)
            client = Client(server.address)
            tc = triton.InferenceServerClient(server.address)
            batch = array[None]

            def tritonclient_infer() -> None:
                tensor = triton.InferInput("pixel_values", list(batch.shape), "FP32")
                tensor.set_data_from_numpy(batch)
                result = tc.infer(args.model, [tensor], parameters={"top_k": TOP_K})
                for name in ("scores", "indices", "labels"):
                    result.as_numpy(name)

            # The same answer on every path before anything is timed.
            typed = typed_stub.Classify(typed_request).results[0].classes
            oip = oip_stub.ModelInfer(request)
            indices = np.frombuffer(oip.raw_output_contents[1], dtype="<i8").tolist()
            assert indices == [k.index for k in typed], (indices, typed)
            blocks = {
                "in-process model.classify": c.sync_block(
                    lambda: model.classify([model.preprocess(raw_tensor)], TOP_K)
                ),
                "typed Classify, raw stub": c.sync_block(lambda: typed_stub.Classify(typed_request)),
                "OIP ModelInfer, raw stub": c.sync_block(lambda: oip_stub.ModelInfer(request)),
                "typed, modelplex_client": c.sync_block(
                    lambda: client.classify([array], model=args.model, top_k=TOP_K)
                ),
                "OIP, tritonclient": c.sync_block(tritonclient_infer),
            }
            monitor.start(server)
            samples = c.interleaved(
                blocks, requests=args.requests, warmup=args.warmup, rounds=args.rounds, monitor=monitor
            )
            noise = monitor.sample()
            tc.close()
            client.close()
            channel.close()
    stats = {name: c.summarize(rounds) for name, rounds in samples.items()}
    base = stats["in-process model.classify"]["p50_us"]
    rows = [[name, s["p50_us"], s["p99_us"], f"{s['p50_us'] / base:.2f}"] for name, s in stats.items()]
    p50 = {name: s["p50_us"] for name, s in stats.items()}
    report = "\n".join(
        [
            f"## OIP against the typed API: {args.model}, input {list(shape)} FLOAT32, top_k {TOP_K}",
            "",
            c.table(["path", "p50 µs", "p99 µs", "p50 / in-process"], rows),
            "",
            f"- OIP ModelInfer / typed Classify (raw stubs): "
            f"{p50['OIP ModelInfer, raw stub'] / p50['typed Classify, raw stub']:.2f}",
            f"- tritonclient / modelplex_client: {p50['OIP, tritonclient'] / p50['typed, modelplex_client']:.2f}",
            f"- {c.noise_line(noise)}",
        ]
    )
    payload = {"stats": stats, "noise": noise, "machine": c.machine_info(c.trees(args), args.torch_threads)}
    c.finish(f"oip-{args.model}", args, report, payload)


if __name__ == "__main__":
    main()

"""PyTriton serving :class:`peer_models.Classifier` over Triton's gRPC KServe v2 endpoint.

PyTriton starts its bundled ``tritonserver`` (with the Python backend); each request goes from
it, through the backend's stub process, to ``infer`` in this process and back. The model is
bound with PyTriton's defaults (batching on, max_batch_size 4, dynamic batcher with no queue
delay). Runs in the peers' virtual environment:

    python benchmarks/peers/pytriton_serve.py --model dominant-color --grpc-port P --http-port Q --metrics-port R

It serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import threading

import numpy as np
from peer_models import Classifier
from pytriton.decorators import batch
from pytriton.model_config import Tensor
from pytriton.triton import Triton, TritonConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    args = p.parse_args()
    classifier = Classifier(args.model)

    @batch
    def infer(pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        scores, indices, labels = classifier.classify(pixel_values)
        return {"scores": scores, "indices": indices, "labels": labels}

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = TritonConfig(
        grpc_address="127.0.0.1", grpc_port=args.grpc_port, http_address="127.0.0.1", http_port=args.http_port,
        metrics_port=args.metrics_port, allow_gpu_metrics=False,
    )  # fmt: skip
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.model,
            infer_func=infer,
            inputs=[Tensor(name="pixel_values", dtype=np.float32, shape=classifier.shape)],
            outputs=[
                Tensor(name="scores", dtype=np.float32, shape=(-1,)),
                Tensor(name="indices", dtype=np.int64, shape=(-1,)),
                Tensor(name="labels", dtype=np.bytes_, shape=(-1,)),
            ],
        )
        triton.run()
        print(f"pytriton serving on 127.0.0.1:{args.grpc_port}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()

"""CUDA paths: device placement, two GPUs in parallel, half precision.
Skipped without a GPU; run on the device machine with `scripts/test.sh -m cuda`."""

from __future__ import annotations

import io

import pytest
import torch

from modelplex.testing import running_server
from modelplex_client import Client

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 30, 200)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_resnet_on_cuda0(dtype):
    config = {
        "models": [
            {"spec": "resnet18", "weights": "random", "devices": ["cuda:0"], "settings": {"dtype": dtype}},
        ]
    }
    with running_server(config) as server, Client(server.address, timeout=60) as client:
        info = client.get_model("resnet18")
        assert [i.device for i in info.instances] == ["cuda:0"]
        assert info.instances[0].memory_bytes > 0
        top = client.classify([png(), png()], model="resnet18", top_k=3)
        assert len(top) == 2 and len(top[0]) == 3


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_serve_one_model():
    config = {
        "models": [{"spec": "resnet18", "weights": "random", "devices": ["cuda:0", "cuda:1"], "max_batch_size": 1}]
    }
    with running_server(config) as server, Client(server.address, timeout=60) as client:
        info = client.get_model("resnet18")
        assert sorted(i.device for i in info.instances) == ["cuda:0", "cuda:1"]
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: client.classify([png()], model="resnet18"), range(32)))
        assert len(results) == 32
        info = client.get_model("resnet18")
        assert all(i.completed > 0 for i in info.instances)


def test_auto_places_on_a_gpu():
    config = {"models": [{"spec": "resnet18", "weights": "random", "devices": ["auto"]}]}
    with running_server(config) as server, Client(server.address, timeout=60) as client:
        assert client.get_model("resnet18").instances[0].device.startswith("cuda:")

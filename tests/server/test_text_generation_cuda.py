"""Text generation on CUDA, in float32 and half precision. Skipped without a GPU; run on the
device machine with `scripts/test.sh -m cuda`."""

from __future__ import annotations

import pytest
import torch

from modelplex.testing import running_server
from modelplex_client import Client
from text_models import reference, text_model

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("spec,folder", [("gpt2", "gpt2"), ("t5-small", "t5")])
def test_generates_on_cuda0(spec, folder, dtype):
    model = {**text_model("m", spec, folder, settings={"dtype": dtype}), "devices": ["cuda:0"]}
    with running_server({"models": [model]}) as server, Client(server.address, timeout=60) as client:
        info = client.get_model("m")
        assert [i.device for i in info.instances] == ["cuda:0"] and info.instances[0].memory_bytes > 0
        out = client.complete("hello world", model="m", max_new_tokens=12)
        assert 1 <= len(out.token_ids) <= 12
        if dtype == "float32":  # half precision may pick other tokens than the float32 reference
            assert list(out.token_ids) == reference(folder, "hello world", 12)
        seeded = [client.complete("hello", model="m", max_new_tokens=12, temperature=1.0, seed=3) for _ in "ab"]
        assert seeded[0].token_ids == seeded[1].token_ids
        streams = [list(client.generate(p, model="m", max_new_tokens=8)) for p in ("a", "hello world")]
        assert all(s[-1].finish_reason in (1, 3) for s in streams)

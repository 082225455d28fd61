"""Sliding-window models over real gRPC, and failures that end one stream only.

A tiny Gemma 3 (sliding and global layers, window 16) and a tiny Mistral (every layer sliding,
window 16) serve prompts up to five times longer than their window, batched with short ones
joining mid-stream: every stream's greedy tokens equal ``model.generate``'s (before the fix
they drifted from the 17th token on, and a long prompt in the batch failed every stream with
INTERNAL). A sequence whose forward pass fails, at its prefill or at a decode step shared with
others, fails alone with INTERNAL; the others carry on, their tokens unchanged."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from modelplex.testing import running_server
from modelplex_client import AsyncClient, ServerError
from text_models import save_family

PROMPTS = [
    ("summarize: streaming tokens " * 14, 20),  # 84 tokens, past the window five times
    ("hello world", 24),
    ("the quick brown fox jumps over the lazy dog " * 4, 16),  # 37 tokens
    ("a", 12),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sliding")
    return {name: save_family(name, root / name) for name in ("gemma3", "mistral")}


@pytest.fixture(scope="module")
def server(folders):
    models = [
        {"spec": "causal-lm", "name": name, "weights": str(folder), "devices": ["cpu"]}
        for name, folder in folders.items()
    ]
    with running_server({"models": models}) as s:
        yield s


def reference(folder, prompt, n):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([AutoTokenizer.from_pretrained(folder)(prompt)["input_ids"]])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0
    )
    return out[0, ids.shape[1] :].tolist()


async def collect(stream):
    return [c async for c in stream]


def tokens(chunks):
    return [t for c in chunks for t in c.token_ids]


@pytest.mark.parametrize("model", ["gemma3", "mistral"])
def test_long_prompts_past_the_window_batched_with_short_ones(server, folders, model):
    async def main():
        async with AsyncClient(server.address, timeout=120) as client:
            (first, n), *rest = PROMPTS
            running = client.generate(first, model=model, max_new_tokens=n, ignore_eos=True)
            head = [await running.__anext__() for _ in range(2)]  # the others join a running batch
            others = [
                asyncio.create_task(collect(client.generate(p, model=model, max_new_tokens=k, ignore_eos=True)))
                for p, k in rest
            ]
            return [head + await collect(running), *[await t for t in others]]

    results = asyncio.run(main())
    for (prompt, n), chunks in zip(PROMPTS, results, strict=True):
        assert tokens(chunks) == reference(folders[model], prompt, n), prompt
    runtime = server.server.registry.get(model, server.server.registry.describe(model).task)
    assert runtime.running == 0


def test_a_failing_sequence_fails_alone(server, folders):
    """A forward pass that raises when it sees the poison token: a prompt holding it fails at its
    prefill; a stream made to generate it fails at its next decode step, which it shares with
    the others; each fails alone, and the others' tokens are those they get alone."""
    registry = server.server.registry
    generator = registry.describe("gemma3").instances[0].model
    poison = 7

    def hook(module, args, kwargs):
        if poison in kwargs["input_ids"]:
            raise RuntimeError("poisoned")

    handle = generator.model.register_forward_pre_hook(hook, with_kwargs=True)
    long, short = PROMPTS[0], PROMPTS[2]

    async def main():
        async with AsyncClient(server.address, timeout=120) as client:
            running = client.generate(long[0], model="gemma3", max_new_tokens=long[1], ignore_eos=True)
            head = [await running.__anext__()]
            healthy = asyncio.create_task(
                collect(client.generate(short[0], model="gemma3", max_new_tokens=short[1], ignore_eos=True))
            )
            outcomes = []
            for options in (dict(prompt=[5, poison, 9]), dict(prompt="hello", logit_bias={poison: 100.0})):
                prompt = options.pop("prompt")
                chunks = []
                with pytest.raises(ServerError) as info:
                    async for chunk in client.generate(prompt, model="gemma3", max_new_tokens=8, **options):
                        chunks.append(chunk)
                outcomes.append((info.value.code, info.value.details, tokens(chunks)))
            return head + await collect(running), await healthy, outcomes

    try:
        survivor, healthy, outcomes = asyncio.run(main())
    finally:
        handle.remove()
    (prefill_code, prefill_why, prefill_tokens), (decode_code, decode_why, decode_tokens) = outcomes
    assert prefill_code == decode_code == grpc.StatusCode.INTERNAL
    assert "poisoned" in prefill_why and "poisoned" in decode_why
    assert prefill_tokens == [] and decode_tokens == [poison]  # its first token came, then its step failed
    assert tokens(survivor) == reference(folders["gemma3"], *long)
    assert tokens(healthy) == reference(folders["gemma3"], *short)

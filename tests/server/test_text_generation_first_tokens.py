"""First tokens first: a stream that joins running ones gets its first token as soon as its
prompt has run, not after the running streams' decode pass."""

from __future__ import annotations

import asyncio
import threading

import pytest

from modelplex.testing import running_server
from modelplex_client import AsyncClient
from text_models import reference


@pytest.fixture(scope="module")
def server():
    with running_server({"models": []}) as s:
        yield s


async def collect(stream):
    return [c async for c in stream]


@pytest.mark.parametrize("folder", ["gpt2", "t5"])
def test_a_joining_stream_gets_its_first_token_before_the_running_ones_decode(server, folder):
    """New streams are prefilled first and their first token is sent at once: it reaches the
    client while the step that decodes the running streams (the newcomer's second token
    included) is still in the model. Both streams' tokens are still those they get alone."""
    from modelplex.server.config import ModelConfig
    from text_models import model_dirs

    name = f"early-{folder}"
    config = {"spec": "gpt2" if folder == "gpt2" else "t5-small", "name": name, "devices": ["cpu"]}
    config["weights"] = str(model_dirs()[folder])
    registry = server.server.registry
    server.call(registry.load(ModelConfig.model_validate(config)))
    runtime = registry.get(name, registry.describe(name).task)
    generator = registry.describe(name).instances[0].model
    step = generator.step
    permits, held = threading.Semaphore(0), threading.Event()
    blocking, in_step = [False], [0]

    def gated_step(sequences):
        if blocking[0]:
            in_step[0] += 1
            held.set()
            assert permits.acquire(timeout=30), "the test never let the step go"
            in_step[0] -= 1
        return step(sequences)

    generator.step = gated_step

    async def until(condition):
        for _ in range(3000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the condition did not come true")

    async def main():
        async with AsyncClient(server.address, timeout=60) as client:
            a = client.generate("hello world", model=name, max_new_tokens=24, ignore_eos=True)
            a_chunks = [await a.__anext__()]
            blocking[0] = True
            await until(held.is_set)  # a's next step is in the model, held
            b = client.generate("the quick brown fox", model=name, max_new_tokens=12, ignore_eos=True)
            b_first = asyncio.ensure_future(b.__anext__())
            await until(lambda: runtime.waiting == 1)  # b is tokenized and waits for the next step
            held.clear()
            permits.release()  # a's step ends; the next one admits b: its prefill, then the step of both
            await until(lambda: b_first.done() or held.is_set())
            first = await b_first
            assert in_step[0] == 1 and first.token_ids  # b's first token came while that step is held
            blocking[0] = False
            for _ in range(100):
                permits.release()
            return a_chunks + await collect(a), [first, *await collect(b)]

    try:
        a_chunks, b_chunks = asyncio.run(main())
    finally:
        generator.step = step
        server.call(registry.unload(name))
    assert [t for c in a_chunks for t in c.token_ids] == reference(folder, "hello world", 24)
    assert [t for c in b_chunks for t in c.token_ids] == reference(folder, "the quick brown fox", 12)


def test_a_model_that_declines_prefill_leaves_the_newcomers_to_step(server):
    """prefill() returning None (the interface's default) is no error: the joining stream is
    stepped with the running ones and still gets the tokens it gets alone."""
    from modelplex.server.config import ModelConfig
    from text_models import model_dirs

    registry = server.server.registry
    config = {"spec": "gpt2", "name": "declines", "devices": ["cpu"], "weights": str(model_dirs()["gpt2"])}
    server.call(registry.load(ModelConfig.model_validate(config)))
    generator = registry.describe("declines").instances[0].model
    asked: list[int] = []

    def declining_prefill(sequences):  # type: ignore[no-untyped-def]
        asked.append(len(sequences))

    generator.prefill = declining_prefill

    async def main():
        async with AsyncClient(server.address, timeout=60) as client:
            a = client.generate("hello world", model="declines", max_new_tokens=40, ignore_eos=True)
            head = [await a.__anext__()]
            b = await collect(client.generate("the quick brown fox", model="declines", max_new_tokens=12))
            return head + await collect(a), b

    try:
        a_chunks, b_chunks = asyncio.run(main())
    finally:
        del generator.prefill
        server.call(registry.unload("declines"))
    assert asked  # b joined while a ran, and the model was asked
    assert [t for c in a_chunks for t in c.token_ids] == reference("gpt2", "hello world", 40)
    assert [t for c in b_chunks for t in c.token_ids] == reference("gpt2", "the quick brown fox", 12)

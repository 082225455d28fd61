"""Continuous batching: concurrent streams share forward passes, join and leave between
steps, and each greedy stream's tokens are the ones it gets alone; a cancelled stream or
one whose deadline passes stops being decoded at once while the others carry on."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

from modelplex.testing import running_server
from modelplex_client import AsyncClient, ServerError
from modelplex_client.pb import text_generation_pb2 as pb
from text_models import reference, text_model, weights_root

PROMPTS = [
    ("hello world", 24),
    ("the quick brown fox jumps over the lazy dog", 9),
    ("héllo 日本語", 30),
    ("summarize: streaming tokens over grpc, hello modelplex", 17),
    ("a", 12),
]


@pytest.fixture(scope="module")
def server():
    models = [
        text_model("gpt2", "gpt2", "gpt2"),
        text_model("long", "gpt2", "gpt2-long", max_new_tokens=1000),
        text_model("t5", "t5-small", "t5"),
    ]
    with running_server({"models": models, "server": {"weights_roots": [weights_root()]}}) as s:
        yield s


class Forwards:
    """Records (batch size, tokens per row) of every forward pass of a loaded model."""

    def __init__(self, server, model):
        self.calls: list[tuple[int, int]] = []
        self.lock = threading.Lock()
        self.runtime = server.server.registry.get(model, server.server.registry.describe(model).task)
        generator = server.server.registry.describe(model).instances[0].model
        self.handle = generator.model.register_forward_pre_hook(self._record, with_kwargs=True)
        self.released: list[object] = []  # sequences whose caches were freed, in order
        self._generator, self._release = generator, generator.release

        def release(sequence):
            self._release(sequence)
            with self.lock:
                self.released.append(sequence)

        generator.release = release

    def _record(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is None:
            ids = kwargs.get("decoder_input_ids")
        if ids is None:  # T5's encoder runs as its own module, not through this hook
            return
        with self.lock:
            self.calls.append(tuple(ids.shape))

    def snapshot(self) -> list[tuple[int, int]]:
        with self.lock:
            return list(self.calls)

    def close(self):
        self.handle.remove()
        del self._generator.release


@pytest.fixture
def forwards(server):
    made = []

    def make(model):
        f = Forwards(server, model)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


async def collect(stream):
    return [c async for c in stream]


@pytest.mark.parametrize("model,folder", [("gpt2", "gpt2"), ("t5", "t5")])
def test_greedy_streams_batched_together_equal_each_alone(server, forwards, model, folder):
    rec = forwards(model)

    async def main():
        async with AsyncClient(server.address, timeout=60) as client:
            first_prompt, first_n = PROMPTS[0]
            first = client.generate(first_prompt, model=model, max_new_tokens=first_n)
            head = [await first.__anext__() for _ in range(3)]  # the others join a running batch
            others = [
                asyncio.create_task(collect(client.generate(p, model=model, max_new_tokens=n))) for p, n in PROMPTS[1:]
            ]
            rest = await collect(first)
            return [head + rest, *[await t for t in others]]

    results = asyncio.run(main())
    for (prompt, n), chunks in zip(PROMPTS, results, strict=True):
        tokens = [t for c in chunks for t in c.token_ids]
        assert tokens == reference(folder, prompt, n), prompt
        assert chunks[-1].finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_EOS)
    batch_sizes = [b for b, t in rec.snapshot() if t == 1]
    assert max(batch_sizes) >= 3, f"the streams were not decoded together: {batch_sizes}"
    assert rec.runtime.running == 0


def test_cancelled_stream_stops_its_forward_passes_and_the_others_carry_on(server, forwards):
    rec = forwards("long")

    async def main():
        async with AsyncClient(server.address, timeout=60) as client:
            survivor = asyncio.create_task(collect(client.generate("hello world", model="long", max_new_tokens=300)))
            doomed = client.generate("the quick brown fox", model="long", max_new_tokens=1000)
            got = [await doomed.__anext__() for _ in range(5)]
            await doomed.aclose()  # cancels the call
            cancelled_at = len(rec.snapshot())
            while not rec.released:  # the cancelled one is released at the next step, on the instance thread
                await asyncio.sleep(0.001)
            left_at = len(rec.snapshot())
            (freed,) = rec.released  # its cache, and only its, is freed at once
            assert freed.released and freed.own is None and not survivor.done()
            return got, await survivor, cancelled_at, left_at

    got, survivor, cancelled_at, left_at = asyncio.run(main())
    calls = rec.snapshot()
    assert len(got) == 5
    # It left within a few steps of the cancellation (the step in flight, and on a loaded machine
    # a step or two more before the server's loop sees the cancel), far short of its 1,000 tokens.
    assert left_at - cancelled_at <= 8
    assert all(b == 1 for b, _ in calls[left_at:]), "the cancelled stream was decoded after it left"
    # The survivor ran to its end, alone once the other left.
    tokens = [t for c in survivor for t in c.token_ids]
    assert tokens == reference("gpt2-long", "hello world", 300)
    assert survivor[-1].finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_EOS)
    assert rec.runtime.running == 0
    time.sleep(0.1)
    assert len(rec.snapshot()) == len(calls), "forward passes went on after every stream ended"


def test_deadline_stops_the_generation_and_frees_its_slot(server, forwards):
    rec = forwards("long")

    async def main():
        async with AsyncClient(server.address, timeout=60) as client:
            survivor = asyncio.create_task(collect(client.generate("hello world", model="long", max_new_tokens=400)))
            with pytest.raises(ServerError) as info:
                await collect(client.generate("the quick brown fox", model="long", max_new_tokens=1000, timeout=0.1))
            assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            at_deadline = len(rec.snapshot())
            while not rec.released:  # the expired stream is released at the next step
                await asyncio.sleep(0.001)
            left_at = len(rec.snapshot())
            (freed,) = rec.released
            assert freed.released and freed.own is None and not survivor.done()
            return await survivor, at_deadline, left_at

    survivor, at_deadline, left_at = asyncio.run(main())
    calls = rec.snapshot()
    # Counted in forward passes, not seconds: once the client saw its deadline, the expired
    # stream took part in at most the pass in flight (and one the server began as it expired).
    assert sum(b == 2 for b, _ in calls[at_deadline:left_at]) <= 2, calls[at_deadline:left_at]
    # The expired stream's forward passes stopped: every pass after its release is the survivor's alone.
    assert len(calls) > left_at and all(b == 1 for b, _ in calls[left_at:]), calls[left_at:]
    tokens = [t for c in survivor for t in c.token_ids]
    assert tokens == reference("gpt2-long", "hello world", 400)
    assert survivor[-1].finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_EOS)
    assert rec.runtime.running == 0


def test_unloading_the_model_ends_its_streams_with_cancelled(server):
    from modelplex_client import Client
    from modelplex_client.pb.text_generation_pb2 import TextGenerationSettings
    from text_models import model_dirs

    with Client(server.address, timeout=60) as client:
        client.load_model(
            "gpt2",
            name="doomed",
            weights=str(model_dirs()["gpt2-long"]),
            devices=["cpu"],
            task_settings=TextGenerationSettings(max_new_tokens=1000),
        )
        stream = client.generate("the quick brown fox", model="doomed", max_new_tokens=1000)
        first = next(stream)
        client.unload_model("doomed")
        rest = list(stream)
        assert rest[-1].finish_reason == pb.FINISH_REASON_CANCELLED
        assert len(first.token_ids) + sum(len(c.token_ids) for c in rest) < 1000
        with pytest.raises(ServerError) as info:
            client.complete("hello", model="doomed", max_new_tokens=1)
        assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_unloading_while_a_stream_joins_ends_every_stream_promptly(server):
    """Unloading during the step that admits a stream (it is neither waiting nor running then):
    that step finishes, then the admitted stream and the one still waiting end with CANCELLED,
    and the stopped runtime refuses new requests."""
    from modelplex.errors import ModelNotReadyError
    from modelplex.server.config import ModelConfig
    from modelplex.tasks.text_generation.runtime import GenerationRequest
    from text_models import model_dirs

    registry = server.server.registry
    config = {"spec": "gpt2", "name": "joining", "weights": str(model_dirs()["gpt2"]), "devices": ["cpu"]}
    config["max_batch_size"] = 1
    server.call(registry.load(ModelConfig.model_validate(config)))
    runtime = registry.get("joining", registry.describe("joining").task)
    generator = registry.describe("joining").instances[0].model
    in_step = threading.Event()
    step = generator.step

    def slow_step(sequences):
        in_step.set()
        time.sleep(0.3)
        return step(sequences)

    generator.step = slow_step

    async def main():
        async with AsyncClient(server.address, timeout=5) as client:
            joining = asyncio.create_task(collect(client.generate("hello world", model="joining", max_new_tokens=50)))
            while not in_step.is_set():
                await asyncio.sleep(0.001)
            waiting = asyncio.create_task(collect(client.generate("a", model="joining", max_new_tokens=50)))
            while runtime.waiting != 1:
                await asyncio.sleep(0.001)
            assert runtime.running == 0  # the first is being admitted
            await asyncio.get_running_loop().run_in_executor(None, server.call, registry.unload("joining"))
            return await joining, await waiting

    # Promptly, counted in tokens: the admitted stream got the one token of the step in
    # flight and the waiting one none, though each asked for 50.
    joining, waiting = asyncio.run(main())
    assert joining[-1].finish_reason == pb.FINISH_REASON_CANCELLED and sum(len(c.token_ids) for c in joining) == 1
    assert joining[-1].usage.completion_tokens == 1
    assert [(c.finish_reason, len(c.token_ids)) for c in waiting] == [(pb.FINISH_REASON_CANCELLED, 0)]
    assert runtime.running == 0 and runtime.waiting == 0
    with pytest.raises(ModelNotReadyError):
        runtime.generate(GenerationRequest("hello", 1))


def test_one_streams_sampling_failure_fails_it_alone(server):
    """A temperature so small that softmax overflows picks greedily; a sequence whose step
    fails alone gets INTERNAL while the stream it shares the batch with carries on."""
    registry = server.server.registry
    runtime = registry.get("long", registry.describe("long").task)
    generator = registry.describe("long").instances[0].model
    step = generator.step

    def step_failing_one(sequences):
        tokens = step(sequences)
        return [
            RuntimeError("boom") if s.sampler.params.top_k == 7 else t for s, t in zip(sequences, tokens, strict=True)
        ]

    generator.step = step_failing_one

    async def main():
        async with AsyncClient(server.address, timeout=30) as client:
            victim = client.generate("hello world", model="long", max_new_tokens=300)
            head = [await victim.__anext__()]
            assert runtime.running == 1
            tiny = await client.complete("the quick brown fox", model="long", max_new_tokens=5, temperature=1e-40)
            with pytest.raises(ServerError) as info:
                await client.complete("a", model="long", max_new_tokens=5, temperature=1.0, top_k=7)
            assert info.value.code == grpc.StatusCode.INTERNAL and "boom" in info.value.details
            return tiny, head + await collect(victim)

    try:
        tiny, victim = asyncio.run(main())
    finally:
        del generator.step
    assert list(tiny.token_ids) == reference("gpt2-long", "the quick brown fox", 5)
    tokens = [t for c in victim for t in c.token_ids]
    assert tokens == reference("gpt2-long", "hello world", 300)
    assert victim[-1].finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_EOS)


def test_a_stream_whose_client_stops_reading_is_paused_until_it_reads(server):
    from modelplex.server.runtimes.stream import DEFAULT_MAX_PENDING as MAX_PENDING_CHUNKS
    from modelplex.tasks.text_generation.runtime import GenerationRequest

    runtime = server.server.registry.get("long", server.server.registry.describe("long").task)

    async def start():
        return runtime.generate(GenerationRequest("hello world", 200))

    async def read():
        return [c async for c in stream]

    stream = server.call(start())
    give_up = time.monotonic() + 10
    while stream.pending < MAX_PENDING_CHUNKS and time.monotonic() < give_up:
        time.sleep(0.005)
    time.sleep(0.1)
    assert stream.pending == stream.generated == MAX_PENDING_CHUNKS  # no more steps for it
    chunks = server.call(read())
    assert [t for c in chunks for t in c.token_ids] == reference("gpt2-long", "hello world", 200)
    assert chunks[-1].finish_reason in ("length", "eos") and runtime.running == 0


def test_streams_over_the_batch_size_wait_and_a_full_queue_is_refused(server):
    from modelplex.server.config import ModelConfig
    from text_models import model_dirs

    config = {
        "spec": "gpt2",
        "name": "narrow",
        "weights": str(model_dirs()["gpt2-long"]),
        "devices": ["cpu"],
        "max_queue_size": 1,
        "max_batch_size": 1,
        "max_new_tokens": 1000,
    }
    server.call(server.server.registry.load(ModelConfig.model_validate(config)))
    runtime = server.server.registry.get("narrow", server.server.registry.describe("narrow").task)

    async def main():
        async with AsyncClient(server.address, timeout=60) as client:
            running = client.generate("hello world", model="narrow", max_new_tokens=1000)
            await running.__anext__()
            waiting = asyncio.create_task(collect(client.generate("a", model="narrow", max_new_tokens=5)))
            while runtime.waiting != 1:
                await asyncio.sleep(0.001)
            with pytest.raises(ServerError) as info:
                await collect(client.generate("x", model="narrow", max_new_tokens=1))
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            await asyncio.sleep(0.05)
            assert not waiting.done() and runtime.running == 1  # the slot is taken: it waits
            await running.aclose()  # frees the slot: the waiting stream joins at the next step
            return await waiting

    try:
        chunks = asyncio.run(main())
        assert sum(len(c.token_ids) for c in chunks) == 5
        assert runtime.running == 0 and runtime.waiting == 0
    finally:
        server.call(server.server.registry.unload("narrow"))


def test_streams_spread_over_two_instances(server):
    from modelplex.server.config import ModelConfig
    from text_models import model_dirs

    config = {
        "spec": "gpt2",
        "name": "pair",
        "weights": str(model_dirs()["gpt2"]),
        "devices": ["cpu"],
        "instances_per_device": 2,
    }
    server.call(server.server.registry.load(ModelConfig.model_validate(config)))
    try:

        async def main():
            async with AsyncClient(server.address, timeout=60) as client:
                return await asyncio.gather(
                    *(collect(client.generate(p, model="pair", max_new_tokens=n)) for p, n in PROMPTS)
                )

        results = asyncio.run(main())
        for (prompt, n), chunks in zip(PROMPTS, results, strict=True):
            tokens = [t for c in chunks for t in c.token_ids]
            assert tokens == reference("gpt2", prompt, n)
        instances = server.server.registry.describe("pair").instances
        assert all(i.completed > 0 for i in instances), [i.completed for i in instances]
    finally:
        server.call(server.server.registry.unload("pair"))


def test_a_too_long_prompt_fails_at_once_while_the_only_slot_is_busy(server):
    """The prompt is tokenized and checked at submission, on the tokenizing executor: a prompt
    over the context window gets INVALID_ARGUMENT (naming both lengths) at once, while the
    model's only batch slot is held by a long stream, which carries on undisturbed; a prompt
    that fits is tokenized once (at submission), never on the instance's thread."""
    from modelplex.server.config import ModelConfig
    from text_models import model_dirs

    config = {
        "spec": "gpt2",
        "name": "single",
        "weights": str(model_dirs()["gpt2"]),  # a 128-token context window
        "devices": ["cpu"],
        "max_batch_size": 1,
    }
    registry = server.server.registry
    server.call(registry.load(ModelConfig.model_validate(config)))
    runtime = registry.get("single", registry.describe("single").task)
    generator = registry.describe("single").instances[0].model
    step, tokenize = generator.step, generator.tokenize
    calls: list[tuple[str, str]] = []  # (prompt, thread name) of every tokenize call
    lock = threading.Lock()

    def slow_step(sequences):
        time.sleep(0.05)  # ~126 steps: the running stream holds the slot for seconds
        return step(sequences)

    def recording_tokenize(prompt):
        with lock:
            calls.append((prompt, threading.current_thread().name))
        return tokenize(prompt)

    generator.step, generator.tokenize = slow_step, recording_tokenize
    long_prompt = "hello world " * 100  # 201 tokens

    async def main():
        async with AsyncClient(server.address, timeout=30) as client:
            running = client.generate("hello world", model="single", max_new_tokens=200)
            head = [await running.__anext__()]
            assert runtime.running == 1 and runtime.max_batch_size == 1
            for rpc in ("generate", "complete"):
                with pytest.raises(ServerError) as info:
                    if rpc == "generate":
                        await collect(client.generate(long_prompt, model="single", max_new_tokens=4))
                    else:
                        await client.complete(long_prompt, model="single", max_new_tokens=4)
                assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
                assert "the prompt is 201 tokens; the context window of model 'single' is 128 tokens" in (
                    info.value.details
                )
            # At once: both refusals came while the only slot's stream was still running.
            assert runtime.running == 1 and runtime.waiting == 0 and runtime.tokenizing == 0
            return head + await collect(running)

    try:
        chunks = asyncio.run(main())
    finally:
        del generator.step, generator.tokenize
        server.call(registry.unload("single"))
    assert chunks[-1].finish_reason == pb.FINISH_REASON_LENGTH and chunks[-1].usage.prompt_tokens == 2
    assert sum(len(c.token_ids) for c in chunks) == 126  # the 128-token window, less the prompt
    assert [p for p, _ in calls] == ["hello world", long_prompt, long_prompt]  # each tokenized once
    instance_thread = f"modelplex-single-{generator.ctx.device}-0"
    assert all("single-prepare" in name and not name.startswith(instance_thread) for _, name in calls), calls

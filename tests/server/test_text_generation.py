"""TextGeneration over real gRPC with tiny random GPT-2 and T5 models loaded by the text plugin
through from_pretrained: greedy output equals model.generate token for token, seeded sampling
repeats, the stream's deltas equal Complete's text, stop sequences and logprobs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modelplex.testing import running_server
from modelplex_client import AsyncClient, Client
from modelplex_client.pb import text_generation_pb2 as pb
from text_models import model_dirs, reference, text_model, weights_root

PROMPTS = ["hello world", "the quick brown fox jumps over the lazy", "héllo 日本語"]


@pytest.fixture(scope="module")
def server():
    models = [text_model("gpt2", "gpt2", "gpt2"), text_model("t5", "t5-small", "t5")]
    with running_server({"models": models, "server": {"weights_roots": [weights_root()]}}) as s:
        yield s


@pytest.fixture
def client(server):
    with Client(server.address, timeout=30) as c:
        yield c


def stream(client, prompt, **options):
    return list(client.generate(prompt, **options))


@pytest.mark.parametrize("model,folder", [("gpt2", "gpt2"), ("t5", "t5")])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_stream_equals_model_generate(client, model, folder, prompt):
    chunks = stream(client, prompt, model=model, max_new_tokens=12)
    tokens = [t for c in chunks for t in c.token_ids]
    expected = reference(folder, prompt, 12)
    assert tokens == expected
    last = chunks[-1]
    assert last.finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_EOS)
    if last.finish_reason == pb.FINISH_REASON_LENGTH:
        assert len(tokens) == 12 == len(expected)
    assert last.usage.completion_tokens == len(tokens)
    assert last.usage.prompt_tokens > 0
    assert last.time_to_first_token_ms > 0
    assert all(c.finish_reason == pb.FINISH_REASON_UNSPECIFIED for c in chunks[:-1])


@pytest.mark.parametrize("model", ["gpt2", "t5"])
def test_stream_deltas_concatenate_to_the_complete_text(client, model):
    for prompt in PROMPTS:
        options = dict(model=model, max_new_tokens=16, temperature=0.9, seed=7, request_id="r1")
        chunks = stream(client, prompt, **options)
        complete = client.complete(prompt, **options)
        assert "".join(c.text for c in chunks) == complete.text
        assert [t for c in chunks for t in c.token_ids] == list(complete.token_ids)
        assert complete.finish_reason == chunks[-1].finish_reason
        assert complete.usage == chunks[-1].usage
        assert complete.request_id == "r1" and all(c.request_id == "r1" for c in chunks)
        # The deltas are the decoding of all the tokens, cut only between whole characters.
        assert complete.text == decode(model, complete.token_ids)


def decode(model, ids):
    from transformers import AutoTokenizer

    folder = {"gpt2": "gpt2", "t5": "t5"}[model]
    return AutoTokenizer.from_pretrained(model_dirs()[folder]).decode(list(ids), skip_special_tokens=True)


@pytest.mark.parametrize("model", ["gpt2", "t5"])
def test_seeded_sampling_gives_the_same_text_twice(client, model):
    temperature = 20.0 if model == "t5" else 1.5  # the tiny random T5's logits are very peaked
    options = dict(model=model, max_new_tokens=20, temperature=temperature, top_k=50, top_p=0.95, seed=1234)
    first = client.complete("hello", **options)
    second = client.complete("hello", **options)
    assert first.token_ids == second.token_ids and first.text == second.text
    others = [client.complete("hello", **{**options, "seed": s}).token_ids for s in (1, 2, 3)]
    assert any(o != first.token_ids for o in others), "different seeds should sample differently"


def test_stop_sequence_across_tokens_is_detected_and_not_emitted(client):
    full = client.complete("hello world", model="gpt2", max_new_tokens=24)
    assert len(full.token_ids) >= 6, "the tiny model ended too early for this test"
    # A stop sequence that spans a token boundary: the end of token 3's text and the start of token 4's.
    texts = [client.complete("hello world", model="gpt2", max_new_tokens=n).text for n in (3, 4)]
    cut = len(texts[0])
    stop = full.text[cut - 1 : cut + 1] if len(texts[1]) > cut else full.text[cut - 1 : cut + 2]
    assert len(stop) >= 2
    chunks = stream(client, "hello world", model="gpt2", max_new_tokens=24, stop=["zzzz-never", stop])
    text = "".join(c.text for c in chunks)
    assert text == full.text[: full.text.find(stop)]
    assert stop not in text
    assert chunks[-1].finish_reason == pb.FINISH_REASON_STOP and chunks[-1].stop_sequence == stop


def test_logprobs_when_asked(client):
    chunks = stream(client, "hello", model="gpt2", max_new_tokens=5, logprobs=3)
    for c in chunks:
        assert len(c.logprobs) == len(c.token_ids) == 1
        lp = c.logprobs[0]
        assert lp.token_id == c.token_ids[0] and lp.logprob <= 0
        assert len(lp.top) == 3 and lp.top[0].logprob >= lp.top[-1].logprob
        assert lp.top[0].token_id == lp.token_id  # greedy picks the most likely
    assert not stream(client, "hello", model="gpt2", max_new_tokens=2)[0].logprobs


def test_eos_finishes_the_stream(client, tmp_path):
    """A copy of the tiny GPT-2 whose end-of-sequence token is the 4th it generates greedily,
    loaded at run time through the generic causal-lm spec."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    expected = reference("gpt2", "hello world", 12)
    eos = expected[3]
    n = expected.index(eos) + 1
    model = AutoModelForCausalLM.from_pretrained(model_dirs()["gpt2"])
    model.config.eos_token_id = model.generation_config.eos_token_id = eos
    folder = Path(weights_root()) / f"eos-{tmp_path.name}"  # LoadModel reads only under the roots
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_dirs()["gpt2"]).save_pretrained(folder)
    client.load_model("causal-lm", name="eos", weights=str(folder), devices=["cpu"])
    try:
        chunks = stream(client, "hello world", model="eos", max_new_tokens=12)
        assert chunks[-1].finish_reason == pb.FINISH_REASON_EOS
        assert [t for c in chunks for t in c.token_ids] == expected[:n]
        assert chunks[-1].usage.completion_tokens == n
    finally:
        client.unload_model("eos")


def test_async_client_generate(server):
    async def main():
        async with AsyncClient(server.address, timeout=30) as client:
            chunks = [c async for c in client.generate("hello world", model="gpt2", max_new_tokens=8)]
            complete = await client.complete("hello world", model="gpt2", max_new_tokens=8)
            return chunks, complete

    chunks, complete = asyncio.run(main())
    assert "".join(c.text for c in chunks) == complete.text
    assert [t for c in chunks for t in c.token_ids] == reference("gpt2", "hello world", 8) == list(complete.token_ids)


def test_model_info_reports_the_batch_size(client):
    info = client.get_model("gpt2")
    assert info.max_batch_size == 16 and info.task == "text_generation"
    extra = pb.TextGenerationInfo()
    assert info.task_info.Unpack(extra)
    assert (extra.context_length, extra.max_new_tokens, extra.is_encoder_decoder) == (128, 512, False)
    assert client.health("modelplex.v1.TextGeneration") == "SERVING"

"""Every bad Generate/Complete input gets its documented status code, on both RPCs,
and the server keeps serving after each."""

from __future__ import annotations

import grpc
import pytest

from modelplex.testing import running_server
from modelplex_client import Client, ServerError
from probe_plugin import PLUGINS, probe_model
from text_models import text_model

INVALID = grpc.StatusCode.INVALID_ARGUMENT
LONG = "hello world " * 100  # 201 tokens (202 with T5's </s>): over the tiny GPT-2's 128 and the tiny T5's 64


@pytest.fixture(scope="module")
def client():
    models = [
        text_model("gpt2", "gpt2", "gpt2", max_new_tokens=50),
        text_model("t5", "t5-small", "t5"),
        probe_model("classifier"),
    ]
    with running_server({"models": models}, extra_plugins=PLUGINS) as server, Client(server.address, timeout=30) as c:
        yield c


CASES = {
    "empty model name": (dict(model=""), grpc.StatusCode.INVALID_ARGUMENT, "names no model"),
    # clipped in the message: unclipped, gRPC would drop the status for RESOURCE_EXHAUSTED
    "huge unknown model name": (dict(model="x" * 20000), grpc.StatusCode.NOT_FOUND, "20000 characters"),
    "unknown model": (dict(model="nope"), grpc.StatusCode.NOT_FOUND, "no model named 'nope'"),
    "a classifier": (dict(model="classifier"), INVALID, "serves image_classification, not text_generation"),
    "max_new_tokens negative": (dict(max_new_tokens=-1), INVALID, "max_new_tokens must be between 1 and 50"),
    "max_new_tokens over the limit": (
        dict(max_new_tokens=51),
        INVALID,
        "between 1 and 50 for model 'gpt2' (0 means 50), got 51",
    ),
    "negative temperature": (dict(temperature=-0.5), INVALID, "temperature must be >= 0"),
    "top_p 0": (dict(top_p=0.0), INVALID, "top_p must be in (0, 1]"),
    "top_p over 1": (dict(top_p=1.5), INVALID, "top_p must be in (0, 1]"),
    "negative top_k": (dict(top_k=-1), INVALID, "top_k must be >= 0"),
    "repetition_penalty 0": (dict(repetition_penalty=0.0), INVALID, "repetition_penalty must be > 0"),
    "too many logprobs": (dict(logprobs=21), INVALID, "logprobs must be between 0 and 20"),
    "too many stop sequences": (dict(stop=[f"s{i}" for i in range(17)]), INVALID, "17 stop sequences; at most 16"),
    "empty stop sequence": (dict(stop=["ok", ""]), INVALID, "stop sequence 1 must have 1 to 256 characters"),
    "n over 16": (dict(n=17), INVALID, "n must be between 1 and 16 (0 means 1), got 17"),
    "min_p over 1": (dict(min_p=1.5), INVALID, "min_p must be in [0, 1] (0 is off), got 1.5"),
    "presence_penalty 3": (dict(presence_penalty=3.0), INVALID, "presence_penalty must be between -2 and 2"),
    "frequency_penalty -3": (dict(frequency_penalty=-3.0), INVALID, "frequency_penalty must be between -2 and 2"),
    "min_new_tokens over max_new_tokens": (
        dict(min_new_tokens=5),
        INVALID,
        "min_new_tokens (5) is more than max_new_tokens (4)",
    ),
    "logit_bias of a token not in the vocabulary": (
        dict(logit_bias={100000: 1.0}),
        INVALID,
        "logit_bias[0] is 100000, not a token id of model 'gpt2' (0 to 399)",
    ),
    "logit_bias over 100": (dict(logit_bias={5: 101.0}), INVALID, "logit_bias of token 5 must be between -100 and 100"),
    "stop token not in the vocabulary": (
        dict(stop_token_ids=[3, -1]),
        INVALID,
        "stop_token_ids[1] is -1, not a token id of model 'gpt2'",
    ),
    "prompt token not in the vocabulary": (
        dict(prompt=[1, 2, 400]),
        INVALID,
        "prompt_token_ids[2] is 400, not a token id of model 'gpt2' (0 to 399)",
    ),
    "prompt over the context window": (
        dict(prompt=LONG),
        INVALID,
        "the prompt is 201 tokens; the context window of model 'gpt2' is 128 tokens",
    ),
    "seq2seq prompt over the context window": (
        dict(model="t5", prompt=LONG),
        INVALID,
        "the prompt is 202 tokens, longer than the context window of model 't5' (64 tokens)",
    ),
}


def status(fn):
    with pytest.raises(ServerError) as info:
        fn()
    return info.value.code, info.value.details


@pytest.mark.parametrize("rpc", ["generate", "complete"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_its_status_and_server_keeps_serving(client, case, rpc):
    fields, code, message = CASES[case]
    options = {"model": "gpt2", "max_new_tokens": 4, **fields}
    prompt = options.pop("prompt", "hello")
    call = (
        (lambda: list(client.generate(prompt, **options)))
        if rpc == "generate"
        else (lambda: client.complete(prompt, **options))
    )
    got_code, details = status(call)
    assert got_code == code, details
    assert message in details
    assert len(client.complete("hello", model="gpt2", max_new_tokens=3).token_ids) == 3


def test_a_prompt_that_fits_still_works_after_a_long_one(client):
    status(lambda: client.complete(LONG, model="gpt2", max_new_tokens=4))
    chunks = list(client.generate("hello world " * 60, model="gpt2", max_new_tokens=50))
    # 121 prompt tokens leave 7 of the 128-token window: generation ends there, with LENGTH.
    assert chunks[-1].usage.prompt_tokens == 121 and chunks[-1].finish_reason == 1
    assert sum(len(c.token_ids) for c in chunks) == chunks[-1].usage.completion_tokens == 7


def test_deadline_exceeded(client):
    code, _ = status(lambda: list(client.generate("hello", model="gpt2", max_new_tokens=50, timeout=0.0001)))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(client.complete("hello", model="gpt2", max_new_tokens=3).token_ids) == 3

"""The sampling knobs vLLM and TGI users expect, over real gRPC against in-process references:
logit_bias equals transformers' sequence_bias, presence and frequency penalties equal a plain
decoding loop that applies OpenAI's formula, min_p = 1 keeps only the most likely token, n
choices repeat their single-choice requests (seed + i), and a prompt given as token ids is
the same prompt."""

from __future__ import annotations

import pytest

from modelplex.testing import running_server
from modelplex_client import Client
from modelplex_client.pb import text_generation_pb2 as pb
from text_models import model_dirs, reference, text_model, weights_root

PROMPT = "hello world"


@pytest.fixture(scope="module")
def client():
    models = [text_model("gpt2", "gpt2", "gpt2")]
    with running_server({"models": models, "server": {"weights_roots": [weights_root()]}}) as server:
        with Client(server.address, timeout=60) as c:
            yield c


@pytest.fixture(scope="module")
def hf():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = model_dirs()["gpt2"]
    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()


def test_logit_bias_equals_transformers_sequence_bias(client, hf):
    import torch

    tok, model = hf
    plain = reference("gpt2", PROMPT, 10)
    bias = {plain[2]: -100.0, plain[5]: 5.0, 7: 3.5}
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=10,
        do_sample=False,
        pad_token_id=0,
        sequence_bias={(t,): b for t, b in bias.items()},
    )
    expected = out[0, ids.shape[1] :].tolist()
    got = client.complete(PROMPT, model="gpt2", max_new_tokens=10, logit_bias=bias)
    assert list(got.token_ids) == expected != plain


def penalised(model, tok, presence, frequency, n):
    """Greedy decoding by full forward passes, the penalties applied to the generated tokens."""
    import torch

    ids = tok(PROMPT)["input_ids"]
    out: list[int] = []
    for _ in range(n):
        logits = model(torch.tensor([ids + out])).logits[0, -1]
        for token in set(out):
            logits[token] -= presence + frequency * out.count(token)
        out.append(int(logits.argmax()))
    return out


@pytest.mark.parametrize("presence,frequency", [(1.5, 0.0), (0.0, 1.2), (0.7, 0.9), (-2.0, 0.0)])
def test_presence_and_frequency_penalties(client, hf, presence, frequency):
    import torch

    tok, model = hf
    with torch.inference_mode():
        expected = penalised(model, tok, presence, frequency, 16)
    got = client.complete(
        PROMPT, model="gpt2", max_new_tokens=16, presence_penalty=presence, frequency_penalty=frequency
    )
    assert list(got.token_ids) == expected
    assert expected != reference("gpt2", PROMPT, 16)


def test_min_p_of_one_keeps_only_the_most_likely_token(client):
    sampled = client.complete(PROMPT, model="gpt2", max_new_tokens=12, temperature=1.5, seed=3, min_p=1.0)
    assert list(sampled.token_ids) == reference("gpt2", PROMPT, 12)
    free = client.complete(PROMPT, model="gpt2", max_new_tokens=12, temperature=1.5, seed=3)
    assert list(free.token_ids) != list(sampled.token_ids)


def test_n_choices_repeat_their_single_choice_requests(client):
    options = dict(model="gpt2", max_new_tokens=10, temperature=1.2, top_k=50)
    chunks = list(client.generate(PROMPT, n=3, seed=11, **options))
    by_choice = {i: [c for c in chunks if c.index == i] for i in range(3)}
    for i, mine in by_choice.items():
        alone = list(client.generate(PROMPT, seed=11 + i, **options))
        assert [t for c in mine for t in c.token_ids] == [t for c in alone for t in c.token_ids]
        assert [c.finish_reason != pb.FINISH_REASON_UNSPECIFIED for c in mine].count(True) == 1
        assert mine[-1].finish_reason == alone[-1].finish_reason
    assert len({tuple(t for c in mine for t in c.token_ids) for mine in by_choice.values()}) > 1
    complete = client.complete(PROMPT, n=3, seed=11, **options)
    assert [list(c.token_ids) for c in complete.choices] == [
        [t for c in by_choice[i] for t in c.token_ids] for i in range(3)
    ]
    assert [c.index for c in complete.choices] == [0, 1, 2]
    assert complete.text == complete.choices[0].text and complete.token_ids == complete.choices[0].token_ids
    assert complete.usage.completion_tokens == sum(c.completion_tokens for c in complete.choices)
    assert complete.usage.prompt_tokens == 2


def test_a_prompt_given_as_token_ids(client, hf):
    tok, _ = hf
    ids = tok("the quick brown fox")["input_ids"]
    by_ids = client.complete(ids, model="gpt2", max_new_tokens=8)
    assert list(by_ids.token_ids) == reference("gpt2", "the quick brown fox", 8)
    assert by_ids.usage.prompt_tokens == len(ids)

"""Chat, special tokens and the token RPCs over real gRPC, with a tiny Gemma 3 (sliding window 16)
whose tokenizer adds a BOS to every prompt and whose chat template starts with one: the server
renders conversations exactly as ``apply_chat_template`` does in-process (one BOS), Chat's greedy
reply equals ``model.generate`` on those tokens, and special tokens can be kept, stopped on and
shown; ModelInfo shows both end tokens; ``modelplex chat`` streams the same replies."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from modelplex.testing import running_server
from modelplex_client import Client, ServerError
from modelplex_client.pb import text_generation_pb2 as pb
from text_models import CHAT_TEMPLATE, save_chat_model

CONVERSATION = [
    {"role": "system", "content": "you are a fox"},
    {"role": "user", "content": "the quick brown fox jumps over the lazy dog, hello world"},
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    return {"chat": save_chat_model(root / "chat"), "bare": save_chat_model(root / "bare", template=False)}


@pytest.fixture(scope="module")
def server(folders):
    def entry(name, folder, **settings):
        return {"spec": "causal-lm", "name": name, "weights": str(folders[folder]), "devices": ["cpu"], **settings}

    models = [
        entry("chat", "chat"),
        entry("configured", "bare", settings={"chat_template": CHAT_TEMPLATE}),
        entry("bare", "bare"),
    ]
    with running_server({"models": models}) as s:
        yield s


@pytest.fixture
def client(server):
    with Client(server.address, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def hf(folders):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = folders["chat"]
    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()


def template_ids(tok, messages):
    out = tok.apply_chat_template(messages, add_generation_prompt=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def generate(model, ids, n, **options):
    import torch

    tensor = torch.tensor([ids])
    out = model.generate(
        tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=n, do_sample=False, pad_token_id=0, **options
    )
    return out[0, len(ids) :].tolist()


def tokens(chunks):
    return [t for c in chunks for t in c.token_ids]


def test_chat_renders_like_apply_chat_template_with_one_bos(client, hf):
    tok, model = hf
    expected_ids = template_ids(tok, CONVERSATION)
    rendered = client.tokenize(model="chat", messages=CONVERSATION)
    assert list(rendered.token_ids) == expected_ids
    assert expected_ids.count(tok.bos_token_id) == 1 and expected_ids[0] == tok.bos_token_id
    # The defect: the rendered text tokenized the default way starts with two BOS tokens.
    text = tok.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert list(client.tokenize(text, model="chat").token_ids)[:2] == [tok.bos_token_id] * 2
    assert list(client.tokenize(text, model="chat", add_special_tokens=False).token_ids) == expected_ids

    chunks = list(client.chat(CONVERSATION, model="chat", max_new_tokens=12, ignore_eos=True))
    assert tokens(chunks) == generate(model, expected_ids, 12, min_new_tokens=12)
    assert chunks[-1].usage.prompt_tokens == len(expected_ids)
    by_hand = client.complete(text, model="chat", max_new_tokens=12, ignore_eos=True, add_special_tokens=False)
    assert list(by_hand.token_ids) == tokens(chunks)
    assert "".join(c.text for c in chunks) == by_hand.text


def test_a_template_from_the_config_and_none(client):
    assert client.tokenize(model="configured", messages=CONVERSATION).token_ids == (
        client.tokenize(model="chat", messages=CONVERSATION).token_ids
    )
    assert len(list(client.chat(CONVERSATION, model="configured", max_new_tokens=3, ignore_eos=True))) == 3
    for call in (
        lambda: list(client.chat(CONVERSATION, model="bare", max_new_tokens=3)),
        lambda: client.tokenize(model="bare", messages=CONVERSATION),
    ):
        with pytest.raises(ServerError) as info:
            call()
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "model 'bare' has no chat template" in info.value.details
    assert client.complete("hello", model="bare", max_new_tokens=2, ignore_eos=True).usage.completion_tokens == 2


def test_model_info_shows_the_end_tokens_and_the_template(client, hf):
    tok, _ = hf
    info = pb.TextGenerationInfo()
    client.get_model("chat").task_info.Unpack(info)
    ends = sorted(tok.convert_tokens_to_ids(["<eos>", "<end_of_turn>"]))
    assert list(info.eos_token_ids) == ends and info.bos_token_id == tok.bos_token_id
    assert info.has_chat_template and info.vocab_size == len(tok) and info.context_length == 256
    client.get_model("bare").task_info.Unpack(info)
    assert not info.has_chat_template


def test_special_tokens_are_kept_and_stopped_on_when_asked(client, hf):
    tok, _ = hf
    start = tok.convert_tokens_to_ids("<start_of_turn>")
    forced = dict(model="chat", max_new_tokens=6, ignore_eos=True, logit_bias={start: 100.0})
    # Skipped (the default): the special token is generated but is no text, so a stop never matches it.
    hidden = client.complete("hello", **forced, stop=["<start_of_turn>"])
    assert list(hidden.token_ids) == [start] * 6 and hidden.text == ""
    assert hidden.finish_reason == pb.FINISH_REASON_LENGTH
    shown = client.complete("hello", **forced, skip_special_tokens=False)
    assert shown.text == "<start_of_turn>" * 6
    stopped = client.complete("hello", **forced, skip_special_tokens=False, stop=["<start_of_turn>"])
    assert stopped.finish_reason == pb.FINISH_REASON_STOP and stopped.stop_sequence == "<start_of_turn>"
    assert stopped.text == "" and len(stopped.token_ids) == 1


def test_stop_token_ids_end_the_generation_without_their_text(client, hf):
    tok, model = hf
    prompt = "the quick brown fox"
    ids = tok(prompt)["input_ids"]
    free = generate(model, ids, 10, min_new_tokens=10)
    stop = free[4]
    n = free.index(stop) + 1
    out = client.complete(prompt, model="chat", max_new_tokens=10, ignore_eos=True, stop_token_ids=[stop])
    assert list(out.token_ids) == free[:n]
    assert out.finish_reason == pb.FINISH_REASON_STOP and out.stop_token_id == stop and out.stop_sequence == ""
    assert out.text == tok.decode(free[: n - 1], skip_special_tokens=True)


def test_ignore_eos_and_min_new_tokens_equal_transformers(client, hf):
    tok, model = hf
    ids = template_ids(tok, CONVERSATION)
    # The model's own ends, so that they matter: the greedy reply with them ended early or not.
    plain = generate(model, ids, 16)
    kept = list(client.chat(CONVERSATION, model="chat", max_new_tokens=16))
    assert tokens(kept) == plain
    no_end = generate(model, ids, 16, eos_token_id=None)  # never stops, suppresses nothing
    assert tokens(client.chat(CONVERSATION, model="chat", max_new_tokens=16, ignore_eos=True)) == no_end
    at_least = generate(model, ids, 16, min_new_tokens=16)
    assert tokens(client.chat(CONVERSATION, model="chat", max_new_tokens=16, min_new_tokens=16)) == at_least


def test_logprob_tokens_carry_their_bytes(client, hf):
    tok, _ = hf
    # A byte-level token for one byte of a 3-byte character: its text is U+FFFD, its bytes are not.
    partial = tok.convert_tokens_to_ids("æ")  # byte 0xE6 in GPT-2's byte alphabet
    out = client.complete(
        "héllo 日本語", model="chat", max_new_tokens=4, ignore_eos=True, logprobs=2, logit_bias={partial: 100.0}
    )
    assert list(out.token_ids) == [partial] * 4
    first = out.logprobs[0]
    assert first.token == "\ufffd" and first.bytes == b"\xe6"
    # The alternatives (the model's own, before the bias) carry theirs too.
    assert len(first.top) == 2 and all(t.bytes and t.bytes.decode("utf-8", "replace") == t.token for t in first.top)
    free = client.complete("héllo 日本語", model="chat", max_new_tokens=8, ignore_eos=True, logprobs=0)
    raw = b"".join(lp.bytes for lp in free.logprobs)
    assert raw.decode("utf-8", errors="replace") == tok.decode(list(free.token_ids), skip_special_tokens=False)


def test_tokenize_and_detokenize(client, hf):
    tok, _ = hf
    text = "héllo 日本語<end_of_turn>"
    out = client.tokenize(text, model="chat")
    assert list(out.token_ids) == tok(text)["input_ids"]
    # Each token's own text (a character split over tokens shows as U+FFFD in each).
    assert len(out.tokens) == len(out.token_ids) and (out.tokens[0], out.tokens[-1]) == ("<bos>", "<end_of_turn>")
    ids = list(out.token_ids)
    assert client.detokenize(ids, model="chat") == "héllo 日本語"
    assert client.detokenize(ids, model="chat", skip_special_tokens=False) == "<bos>" + text
    with pytest.raises(ServerError) as info:
        client.detokenize([5, len(tok) + 7], model="chat")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"token_ids[1] is {len(tok) + 7}, not a token id of model 'chat' (0 to {len(tok) - 1})" in (
        info.value.details
    )


def test_modelplex_chat_streams_the_replies_of_a_conversation(server, client):
    lines = ["hello there", "the quick brown fox"]
    expected, conversation = [], []
    for line in lines:  # what the CLI asks: each reply joins the conversation
        conversation.append({"role": "user", "content": line})
        reply = "".join(c.text for c in client.chat(conversation, model="chat", max_new_tokens=6))
        conversation.append({"role": "assistant", "content": reply})
        expected.append(reply)
    assert any(expected)
    out = subprocess.run(
        [sys.executable, "-m", "modelplex_client.cli", "chat", "--server", server.address, "--model", "chat"]
        + ["--max-new-tokens", "6"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout == "".join(reply + "\n" for reply in expected)

"""`modelplex generate`: tokens printed as they arrive, or one JSON chunk per line."""

from __future__ import annotations

import json

import pytest

from modelplex.testing import running_server
from modelplex_client import Client
from modelplex_client.cli import main
from text_models import text_model


@pytest.fixture(scope="module")
def address():
    with running_server({"models": [text_model("gpt2", "gpt2", "gpt2")]}) as server:
        yield server.address


def test_generate_prints_the_text(address, capsys):
    assert main(["generate", "hello world", "--model", "gpt2", "--server", address, "--max-new-tokens", "10"]) == 0
    out, err = capsys.readouterr()
    with Client(address) as client:
        expected = client.complete("hello world", model="gpt2", max_new_tokens=10)
    assert out == expected.text + "\n"
    assert "10 tokens" in err or "eos" in err


def test_generate_json_prints_one_chunk_per_line(address, capsys):
    args = [
        "generate",
        "hello",
        "--model",
        "gpt2",
        "--server",
        address,
        "--max-new-tokens",
        "6",
        "--json",
        "--temperature",
        "0.8",
        "--seed",
        "3",
        "--top-p",
        "0.9",
        "--stop",
        "zz",
        "--logprobs",
        "2",
    ]
    assert main(args) == 0
    chunks = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 1 <= len(chunks) <= 6
    assert all("token_ids" in c and len(c["logprobs"][0]["top"]) == 2 for c in chunks)
    assert chunks[-1]["finish_reason"] in ("FINISH_REASON_LENGTH", "FINISH_REASON_EOS") and "usage" in chunks[-1]


def test_generate_reports_a_bad_request(address, capsys):
    assert main(["generate", "hello", "--model", "gpt2", "--server", address, "--max-new-tokens", "-1"]) == 1
    assert "INVALID_ARGUMENT: max_new_tokens must be between 1 and 512" in capsys.readouterr().err

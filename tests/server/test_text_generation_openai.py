"""The OpenAI-compatible HTTP door, driven by the real ``openai`` SDK: completions and chat
completions, streamed and not, equal the gRPC results for the same requests; /v1/models lists
the text models; errors get OpenAI's error shape with the HTTP status of their gRPC code;
bearer tokens are checked like the gRPC calls'. Skipped without the openai extra."""

from __future__ import annotations

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from modelplex.server.config import AuthSettings  # noqa: E402
from modelplex.server.security import Authenticator  # noqa: E402
from modelplex.tasks.text_generation.openai_door import OpenAIServer  # noqa: E402
from modelplex.testing import running_server  # noqa: E402
from modelplex_client import Client  # noqa: E402
from text_models import save_chat_model, text_model, weights_root  # noqa: E402

CONVERSATION = [{"role": "user", "content": "the quick brown fox jumps over the lazy dog"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    chat = save_chat_model(tmp_path_factory.mktemp("door") / "chat")
    models = [
        text_model("gpt2", "gpt2", "gpt2"),
        {"spec": "causal-lm", "name": "chat", "weights": str(chat), "devices": ["cpu"]},
    ]
    with running_server({"models": models, "server": {"weights_roots": [weights_root()]}}) as s:
        yield s


def door(server, auth=None):
    registry = server.server.registry
    names = lambda: [m.name for m in registry.list() if m.task == "text_generation"]  # noqa: E731
    d = OpenAIServer(models=names, auth=auth)
    server.call(d.start(registry.lookup("text_generation"), "127.0.0.1", 0))
    return d


@pytest.fixture(scope="module")
def sdk(server):
    d = door(server)
    try:
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key="unused", max_retries=0)
    finally:
        server.call(d.stop())


@pytest.fixture
def grpc_client(server):
    with Client(server.address, timeout=60) as c:
        yield c


def test_models_are_listed(sdk):
    assert sorted(m.id for m in sdk.models.list()) == ["chat", "gpt2"]


@pytest.mark.parametrize("stream", [False, True])
def test_completions_equal_the_grpc_result(sdk, grpc_client, stream):
    options = dict(max_tokens=12, temperature=0.9, seed=5, stop=["zzz"])
    expected = grpc_client.complete("hello world", model="gpt2", max_new_tokens=12, temperature=0.9, seed=5)
    if stream:
        events = list(
            sdk.completions.create(
                model="gpt2", prompt="hello world", stream=True, stream_options={"include_usage": True}, **options
            )
        )
        text = "".join(e.choices[0].text for e in events if e.choices)
        finish = [e.choices[0].finish_reason for e in events if e.choices and e.choices[0].finish_reason]
        usage = events[-1].usage
    else:
        out = sdk.completions.create(model="gpt2", prompt="hello world", **options)
        text, finish, usage = out.choices[0].text, [out.choices[0].finish_reason], out.usage
    assert text == expected.text and finish == ["length"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 12)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_equal_the_grpc_result(sdk, grpc_client, stream):
    chunks = list(grpc_client.chat(CONVERSATION, model="chat", max_new_tokens=10, ignore_eos=True))
    expected = "".join(c.text for c in chunks)
    extra = {"ignore_eos": True}  # vLLM's extension, as the SDK sends it
    if stream:
        events = list(
            sdk.chat.completions.create(
                model="chat", messages=CONVERSATION, max_tokens=10, temperature=0, stream=True, extra_body=extra
            )
        )
        assert events[0].choices[0].delta.role == "assistant"
        text = "".join(e.choices[0].delta.content or "" for e in events)
        finish = events[-1].choices[0].finish_reason
    else:
        out = sdk.chat.completions.create(
            model="chat", messages=CONVERSATION, max_tokens=10, temperature=0, extra_body=extra
        )
        assert out.choices[0].message.role == "assistant"
        text, finish = out.choices[0].message.content, out.choices[0].finish_reason
        assert out.usage.completion_tokens == 10 and out.usage.prompt_tokens == chunks[-1].usage.prompt_tokens
    assert text == expected and finish == "length"


def test_chat_logprobs_and_n(sdk, grpc_client):
    options = dict(temperature=1.0, seed=3, n=2)
    out = sdk.chat.completions.create(
        model="chat", messages=CONVERSATION, max_tokens=4, logprobs=True, top_logprobs=2, **options
    )
    chunks = list(grpc_client.chat(CONVERSATION, model="chat", max_new_tokens=4, logprobs=2, **options))
    assert [c.index for c in out.choices] == [0, 1]
    for choice in out.choices:
        mine = [lp for c in chunks if c.index == choice.index for lp in c.logprobs]
        content = choice.logprobs.content
        assert [t.logprob for t in content] == pytest.approx([lp.logprob for lp in mine], abs=1e-5)
        assert [bytes(t.bytes) for t in content] == [lp.bytes for lp in mine]
        assert all(len(t.top_logprobs) == 2 for t in content)
    assert out.usage.completion_tokens == sum(len(c.logprobs.content) for c in out.choices)


def test_errors_have_openai_shape_and_status(sdk):
    with pytest.raises(openai.NotFoundError) as info:
        sdk.completions.create(model="nope", prompt="hi", max_tokens=2)
    assert "no model named 'nope'" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        sdk.completions.create(model="gpt2", prompt="hi", max_tokens=2, temperature=-1)
    assert "temperature must be >= 0" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="gpt2", messages=CONVERSATION, max_tokens=2)
    assert "model 'gpt2' has no chat template" in info.value.body["message"]
    assert sdk.completions.create(model="gpt2", prompt="hi", max_tokens=2).usage.completion_tokens == 2


def test_bearer_tokens_are_checked(server, monkeypatch):
    monkeypatch.setenv("DOOR_TOKENS", "s3cret-door-token-0123 inference\n")
    d = door(server, Authenticator(AuthSettings(tokens_env="DOOR_TOKENS")))
    url = f"http://127.0.0.1:{d.port}/v1"
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        ok = openai.OpenAI(base_url=url, api_key="s3cret-door-token-0123", max_retries=0)
        assert ok.completions.create(model="gpt2", prompt="hi", max_tokens=2).usage.completion_tokens == 2
    finally:
        server.call(d.stop())


def test_the_door_is_started_by_the_server_from_its_config():
    import json
    import urllib.request

    from modelplex.errors import ConfigError
    from text_models import text_model

    config = {"models": [text_model("gpt2", "gpt2", "gpt2")], "server": {"front_doors": {"openai": 0}}}
    with running_server(config) as s:
        door = s.server.front_doors["openai"]
        port = door.port if hasattr(door, "port") else None
        assert port, "the door reports the port it bound"
        listed = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10))
        assert [m["id"] for m in listed["data"]] == ["gpt2"]
    with pytest.raises(ConfigError, match="no task brings telnet; known: openai"):
        with running_server({"server": {"front_doors": {"telnet": 0}}}):
            pass
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{busy} \\(is the port in use"):
            with running_server({"server": {"front_doors": {"openai": busy}}}):
                pass

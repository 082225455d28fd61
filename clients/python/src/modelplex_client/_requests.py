"""Request building and error translation shared by the sync and asyncio clients."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message
from grpc_health.v1 import health_pb2_grpc

from modelplex_client.pb import (
    common_pb2,
    image_classification_pb2,
    image_classification_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    text_generation_pb2,
    text_generation_pb2_grpc,
)

__all__ = [
    "ImageLike",
    "StubsMixin",
    "ServerError",
    "channel_options",
    "channel_target",
    "service_config",
    "chat_messages",
    "chat_request",
    "classify_request",
    "complete_request",
    "detokenize_request",
    "generate_request",
    "load_request",
    "server_error",
    "tokenize_request",
    "add_image",
]

ImageLike = bytes | str | os.PathLike | common_pb2.Tensor | Any
"""An encoded image's bytes, the path of an image file, a ``Tensor`` message,
or an array-like (numpy, torch) of the model's input shape, sent as FLOAT32."""


class ServerError(Exception):
    """A call failed on the server, with its gRPC status code and message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def server_error(err: grpc.RpcError) -> ServerError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return ServerError(code, details or "")


# Calls that change nothing on the server: safe to send again to another replica when one
# answers UNAVAILABLE (shutting down, model not ready there) or cannot be reached. LoadModel
# and UnloadModel are not (a second try would fail ALREADY_EXISTS / NOT_FOUND), nor are the
# client-streaming calls (StreamingRecognize, ModelStreamInfer).
_IDEMPOTENT = [
    {"service": "modelplex.v1.ImageClassification"},
    {"service": "modelplex.v1.TextGeneration"},
    {"service": "modelplex.v1.SpeechSynthesis"},
    {"service": "modelplex.v1.ImageGeneration"},
    {"service": "modelplex.v1.SpeechRecognition", "method": "Recognize"},
    *({"service": "modelplex.v1.ModelRepository", "method": m} for m in ("ListModels", "GetModel", "ListPlugins")),
    {"service": "grpc.health.v1.Health", "method": "Check"},
    *(
        {"service": "inference.GRPCInferenceService", "method": m}
        for m in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
    ),
    {"service": "inference.GRPCInferenceService", "method": "RepositoryIndex"},
]


def service_config(*, max_attempts: int = 5) -> str:
    """The gRPC service config of the clients' channels: ``round_robin`` over every address
    of the target (each replica gets its share of the calls), and up to ``max_attempts``
    tries, with backoff, of an idempotent call that fails UNAVAILABLE or CANCELLED. A
    server-streaming call is retried only until its first response arrives (gRPC's rule), so
    a stream is never replayed from the start after it has begun.

    CANCELLED is retried because a server that stops gracefully ends with it the calls it had
    received but not yet started (gRPC core resets their streams when the server shuts down),
    so another replica can serve them; a call this client cancels itself is never retried
    (gRPC stops retrying once the application cancels)."""
    retry = {
        "maxAttempts": max_attempts,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
    }
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [{"name": _IDEMPOTENT, "retryPolicy": retry}],
        }
    )


def channel_options(max_message_mb: float) -> list[tuple[str, int | str]]:
    size = int(max_message_mb * 1024 * 1024)
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        ("grpc.service_config", service_config()),
        ("grpc.enable_retries", 1),
    ]


def channel_target(servers: str) -> str:
    """The gRPC target for ``servers``: one address or URI as it is (``host:port``;
    ``dns:///name:port`` balances over every address the name has, re-resolved when a
    connection closes: a Kubernetes headless Service), or a comma-separated list
    ``a:port,b:port,...`` as one static list (``ipv4:...``/``ipv6:...``), each name in it
    resolved once, here. ValueError for an entry without a port or a list mixing IPv4 and
    IPv6."""
    parts = [p.strip() for p in servers.split(",") if p.strip()]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        raise ValueError("no server address given")
    addresses: list[tuple[str, int]] = []
    for part in parts:
        if ":/" in part or part.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
            raise ValueError(f"{part!r}: a list takes host:port entries (give a URI on its own)")
        host, port = _host_port(part)
        for address in _addresses(host, port):
            if address not in addresses:
                addresses.append(address)
    v6 = {":" in host for host, _ in addresses}
    if len(v6) > 1:
        raise ValueError(f"{servers!r} mixes IPv4 and IPv6 addresses; list one family")
    if v6 == {True}:
        return "ipv6:" + ",".join(f"[{h}]:{p}" for h, p in addresses)
    return "ipv4:" + ",".join(f"{h}:{p}" for h, p in addresses)


def _host_port(entry: str) -> tuple[str, int]:
    host, sep, port = entry.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{entry!r} is not host:port")
    return host.strip("[]"), int(port)


def _addresses(host: str, port: int) -> list[tuple[str, int]]:
    try:
        return [(str(ipaddress.ip_address(host)), port)]
    except ValueError:
        pass
    # IPv4 first: one list is one family, and "localhost" has both.
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            found = socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except OSError:
            continue
        return [(str(info[4][0]), port) for info in found]
    raise ValueError(f"cannot resolve {host!r}")


def add_image(request: image_classification_pb2.ClassifyRequest, image: ImageLike) -> None:
    """Append ``image`` to ``request`` in place.

    Fields are set on the message the request already holds: passing sub-messages to
    constructors copies a large tensor once per level (measured 1.1 ms of a 602 KB
    request's 1.5 ms; docs/benchmarks.md, section 5)."""
    if isinstance(image, bytes | bytearray | memoryview):
        request.images.add().encoded = bytes(image)
    elif isinstance(image, str | os.PathLike):
        request.images.add().encoded = Path(image).read_bytes()
    elif isinstance(image, common_pb2.Tensor):
        request.images.add().tensor.CopyFrom(image)
    elif hasattr(image, "__array__") or hasattr(image, "numpy"):
        import numpy as np  # only needed when a caller passes arrays

        array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
        array = np.ascontiguousarray(array, dtype="<f4")
        tensor = request.images.add().tensor
        tensor.shape.extend(array.shape)
        tensor.dtype = common_pb2.DATA_TYPE_FLOAT32
        tensor.data = array.tobytes()
    else:
        raise TypeError(f"cannot send {type(image).__name__} as an image: pass bytes, a path, a Tensor or an array")


def classify_request(
    images: Iterable[ImageLike], *, model: str, top_k: int = 0, request_id: str = ""
) -> image_classification_pb2.ClassifyRequest:
    """A ClassifyRequest; ``top_k`` 0 asks for the server default: 5, or every class if fewer."""
    request = image_classification_pb2.ClassifyRequest(model=model, request_id=request_id, top_k=top_k)
    for image in images:
        add_image(request, image)
    return request


def load_request(
    spec: str,
    *,
    name: str = "",
    variant: str = "",
    weights: str = "",
    devices: Sequence[str] = (),
    instances_per_device: int = 0,
    settings: Mapping[str, Any] | None = None,
    task_settings: message.Message | None = None,
) -> models_pb2.LoadModelRequest:
    """A LoadModelRequest. ``settings`` are the spec's own (sent as JSON, so that a value of
    the wrong type reaches the server and is refused there, never dropped); ``task_settings``
    is the task's settings message, e.g. ``ImageClassificationSettings(max_batch_size=4)``."""
    req = models_pb2.LoadModelRequest(
        model=name,
        spec=spec,
        variant=variant,
        weights=weights,
        devices=list(devices),
        instances_per_device=instances_per_device,
    )
    if settings:
        req.settings_json = json.dumps(dict(settings))
    if task_settings is not None:
        req.task_settings.Pack(task_settings)
    return req


def _generation_fields(
    req: Any,
    *,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float | None,
    repetition_penalty: float | None,
    seed: int | None,
    stop: Sequence[str] | str,
    logprobs: int | None,
    skip_special_tokens: bool | None,
    stop_token_ids: Sequence[int],
    ignore_eos: bool,
    min_new_tokens: int,
    presence_penalty: float,
    frequency_penalty: float,
    min_p: float,
    logit_bias: Mapping[int, float] | None,
    n: int,
) -> Any:
    """Set the generation fields shared by GenerateRequest, CompleteRequest and ChatRequest."""
    req.max_new_tokens = max_new_tokens
    req.temperature = temperature
    req.top_k = top_k
    req.stop.extend([stop] if isinstance(stop, str) else list(stop))
    req.stop_token_ids.extend(stop_token_ids)
    req.ignore_eos = ignore_eos
    req.min_new_tokens = min_new_tokens
    req.presence_penalty = presence_penalty
    req.frequency_penalty = frequency_penalty
    req.min_p = min_p
    req.n = n
    for token, bias in (logit_bias or {}).items():
        req.logit_bias[int(token)] = bias
    for name, value in (
        ("top_p", top_p),
        ("repetition_penalty", repetition_penalty),
        ("seed", seed),
        ("logprobs", logprobs),
        ("skip_special_tokens", skip_special_tokens),
    ):
        if value is not None:
            setattr(req, name, value)
    return req


_GENERATION_DEFAULTS: dict[str, Any] = dict(
    max_new_tokens=64,
    temperature=0.0,
    top_k=0,
    top_p=None,
    repetition_penalty=None,
    seed=None,
    stop=(),
    logprobs=None,
    skip_special_tokens=None,
    stop_token_ids=(),
    ignore_eos=False,
    min_new_tokens=0,
    presence_penalty=0.0,
    frequency_penalty=0.0,
    min_p=0.0,
    logit_bias=None,
    n=1,
)


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_GENERATION_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown generation option(s): {', '.join(unknown)}")
    return {**_GENERATION_DEFAULTS, **options}


def generate_request(
    prompt: str | Sequence[int],
    *,
    model: str,
    request_id: str = "",
    add_special_tokens: bool | None = None,
    **options: Any,
) -> text_generation_pb2.GenerateRequest:
    """A GenerateRequest; None leaves an optional field unset (the server's default).

    ``prompt`` is the text, or a list of token ids. Options: max_new_tokens (64), temperature,
    top_k, top_p, repetition_penalty, seed, stop, logprobs, skip_special_tokens, stop_token_ids,
    ignore_eos, min_new_tokens, presence_penalty, frequency_penalty, min_p, logit_bias
    ({token id: bias}), n."""
    req = text_generation_pb2.GenerateRequest(model=model, request_id=request_id)
    if isinstance(prompt, str):
        req.prompt = prompt
    else:
        req.prompt_token_ids.extend(prompt)
    if add_special_tokens is not None:
        req.add_special_tokens = add_special_tokens
    return _generation_fields(req, **_options(options))


def complete_request(prompt: str | Sequence[int], *, model: str, **options: Any) -> text_generation_pb2.CompleteRequest:
    """A CompleteRequest: the same fields as :func:`generate_request`."""
    request = text_generation_pb2.CompleteRequest()
    request.ParseFromString(generate_request(prompt, model=model, **options).SerializeToString())
    return request


Message = Mapping[str, str] | tuple[str, str] | text_generation_pb2.ChatMessage


def chat_messages(messages: Sequence[Message]) -> list[text_generation_pb2.ChatMessage]:
    """ChatMessages from ``{"role": ..., "content": ...}`` dicts, ``(role, content)`` pairs or messages."""
    out = []
    for m in messages:
        if isinstance(m, text_generation_pb2.ChatMessage):
            out.append(m)
        elif isinstance(m, tuple):
            out.append(text_generation_pb2.ChatMessage(role=m[0], content=m[1]))
        else:
            out.append(text_generation_pb2.ChatMessage(role=m["role"], content=m["content"]))
    return out


def chat_request(
    messages: Sequence[Message],
    *,
    model: str,
    request_id: str = "",
    add_generation_prompt: bool | None = None,
    **options: Any,
) -> text_generation_pb2.ChatRequest:
    """A ChatRequest: the conversation (dicts with role and content, or (role, content) pairs)
    and the generation options of :func:`generate_request`."""
    req = text_generation_pb2.ChatRequest(model=model, request_id=request_id, messages=chat_messages(messages))
    if add_generation_prompt is not None:
        req.add_generation_prompt = add_generation_prompt
    return _generation_fields(req, **_options(options))


def tokenize_request(
    text: str = "",
    *,
    model: str,
    add_special_tokens: bool | None = None,
    messages: Sequence[Message] = (),
    add_generation_prompt: bool | None = None,
) -> text_generation_pb2.TokenizeRequest:
    """A TokenizeRequest for a text, or for a conversation (``messages=``)."""
    req = text_generation_pb2.TokenizeRequest(model=model, text=text, messages=chat_messages(messages))
    if add_special_tokens is not None:
        req.add_special_tokens = add_special_tokens
    if add_generation_prompt is not None:
        req.add_generation_prompt = add_generation_prompt
    return req


def detokenize_request(
    token_ids: Sequence[int], *, model: str, skip_special_tokens: bool | None = None
) -> text_generation_pb2.DetokenizeRequest:
    """A DetokenizeRequest."""
    req = text_generation_pb2.DetokenizeRequest(model=model, token_ids=list(token_ids))
    if skip_special_tokens is not None:
        req.skip_special_tokens = skip_special_tokens
    return req


class StubsMixin:
    """The stubs of every service on one channel, shared by the sync and asyncio clients."""

    def _bind(self, target: str, timeout: float | None, channel: Any) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = channel
        self._models = models_pb2_grpc.ModelRepositoryStub(channel)
        self._classification = image_classification_pb2_grpc.ImageClassificationStub(channel)
        self._text = text_generation_pb2_grpc.TextGenerationStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

"""The client's calls, described once per task and bound by both clients.

Each method of :class:`Client` and :class:`AsyncClient` comes from one description here:
which stub and RPC it calls, how its arguments become the request, and what of the
response it returns. The sync client runs the call and returns the result; the asyncio
client returns a coroutine (unary) or an async iterator (streams). Adding a task's calls
adds a section here, never a method to each client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from modelplex_client._requests import (
    ServerError,
    chat_request,
    classify_request,
    complete_request,
    detokenize_request,
    generate_request,
    load_request,
    tokenize_request,
)
from modelplex_client.pb import models_pb2

__all__ = ["Methods", "Stream", "Unary"]


def _same(response: Any) -> Any:
    return response


class Unary:
    """A unary call: ``build(*args, **kwargs)`` is the request, ``result(response)`` the value."""

    def __init__(
        self,
        stub: str,
        rpc: str,
        build: Callable[..., Any],
        result: Callable[[Any], Any] = _same,
        *,
        doc: str,
        on_error: Callable[[ServerError], Any] | None = None,
    ) -> None:
        self.stub, self.rpc, self.build, self.result, self.on_error = stub, rpc, build, result, on_error
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self

        def call(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            return client._unary(self, self.build(*args, **kwargs), timeout)

        call.__name__, call.__doc__ = self.name, self.__doc__
        return call


class Stream(Unary):
    """A server-streaming call: the response messages, as they arrive. Leaving the iteration
    early cancels the call on the server."""

    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self

        def call(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            return client._stream(self, self.build(*args, **kwargs), timeout)

        call.__name__, call.__doc__ = self.name, self.__doc__
        return call


def _unknown_health(error: ServerError) -> str:
    if error.code == grpc.StatusCode.NOT_FOUND:  # the health service's word for a name it never set
        return "SERVICE_UNKNOWN"
    raise error


class Methods:
    """Every call of both clients. Each takes ``timeout=`` (seconds; default the client's)
    and raises :class:`ServerError` when the server refuses or fails it."""

    # -- the model repository ---------------------------------------------------------------
    list_models = Unary(
        "_models",
        "ListModels",
        lambda *, task="": models_pb2.ListModelsRequest(task=task),
        lambda r: list(r.models),
        doc="Every model on the server (``task=`` one task id only), with its state, weights, "
        "instances and ``task_info``.",
    )
    get_model = Unary(
        "_models",
        "GetModel",
        lambda model: models_pb2.GetModelRequest(model=model),
        lambda r: r.model,
        doc="One model's ModelInfo.",
    )
    load_model = Unary(
        "_models",
        "LoadModel",
        load_request,
        lambda r: r.model,
        doc="Load a model from a registered spec: ``load_model(spec, name=, variant=, weights=, devices=, "
        "instances_per_device=, settings=, task_settings=)``; its ModelInfo once it is ready.",
    )
    unload_model = Unary(
        "_models",
        "UnloadModel",
        lambda model: models_pb2.UnloadModelRequest(model=model),
        lambda r: None,
        doc="Unload a model; in-flight requests finish first.",
    )
    list_plugins = Unary(
        "_models",
        "ListPlugins",
        lambda: models_pb2.ListPluginsRequest(),
        lambda r: list(r.plugins),
        doc="The discovered plugins (broken and skipped ones too), with their specs and tasks.",
    )
    health = Unary(
        "_health",
        "Check",
        lambda service="": health_pb2.HealthCheckRequest(service=service),
        lambda r: health_pb2.HealthCheckResponse.ServingStatus.Name(r.status),
        on_error=_unknown_health,
        doc='The grpc.health.v1 status name of the server (""), a service, or a model '
        '(``"modelplex.model/NAME"``): SERVING, NOT_SERVING, SERVICE_UNKNOWN.',
    )

    # -- image classification ---------------------------------------------------------------
    classify = Unary(
        "_classification",
        "Classify",
        classify_request,
        lambda r: [c.classes for c in r.results],
        doc="Classify a batch of images (bytes, paths, Tensor messages or arrays): "
        "``classify(images, model=, top_k=0, request_id='')``; one top-k list (best first) per image.",
    )
    classify_request = Unary(
        "_classification",
        "Classify",
        lambda request: request,
        doc="Send a ClassifyRequest as built; the whole ClassifyResponse.",
    )

    # -- text generation --------------------------------------------------------------------
    generate = Stream(
        "_text",
        "Generate",
        generate_request,
        doc="Generate text from a prompt (a string, or a list of token ids): ``generate(prompt, model=, "
        "max_new_tokens=64, temperature=, top_k=, top_p=, repetition_penalty=, seed=, stop=, logprobs=, "
        "add_special_tokens=, skip_special_tokens=, stop_token_ids=, ignore_eos=, min_new_tokens=, "
        "presence_penalty=, frequency_penalty=, min_p=, logit_bias=, n=, request_id=)``, yielding the chunks "
        "as they are decoded: each has the ``text`` delta, its ``token_ids`` and its choice's ``index``; the "
        "last of each choice also has ``finish_reason``, ``usage`` and ``time_to_first_token_ms``.",
    )
    complete = Unary(
        "_text",
        "Complete",
        complete_request,
        doc="The whole generated text at once (the unary Complete call); arguments as for ``generate``; "
        "with ``n`` > 1, every choice in ``choices``.",
    )
    chat = Stream(
        "_text",
        "Chat",
        chat_request,
        doc="Stream the model's reply to a conversation rendered by its chat template: ``chat(messages, "
        "model=, add_generation_prompt=, ...)`` with messages as ``{'role': ..., 'content': ...}`` dicts or "
        "``(role, content)`` pairs, and the options of ``generate``; chunks as ``generate`` yields them.",
    )
    tokenize = Unary(
        "_text",
        "Tokenize",
        tokenize_request,
        doc="``tokenize(text, model=, add_special_tokens=)`` or ``tokenize(model=, messages=[...])``: the "
        "TokenizeResponse (``token_ids`` and each token's text in ``tokens``).",
    )
    detokenize = Unary(
        "_text",
        "Detokenize",
        detokenize_request,
        lambda r: r.text,
        doc="``detokenize(token_ids, model=, skip_special_tokens=)``: the text of the tokens.",
    )

"""An OpenAI-compatible HTTP door to the text-generation models: ``/v1/completions``,
``/v1/chat/completions`` (streamed as server-sent events, or whole) and ``/v1/models``, on
its own port, off unless configured.

It is a Starlette app served by uvicorn (the ``openai`` extra: ``pip install
modelplex[openai]``), on the server's event loop, over the same runtimes as the gRPC
TextGeneration service: the same continuous batching, limits and errors (each modelplex
error becomes the HTTP status of its gRPC code), and the same bearer tokens (the
``inference`` scope), checked by the server's authenticator. A client that goes away stops
its generation at the next step, as over gRPC.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from modelplex.errors import ModelplexError
from modelplex.taskdef import RuntimeLookup
from modelplex.tasks.text_generation.decode import GenerationChunk, GenerationRequest, TokenLogprobs
from modelplex.tasks.text_generation.openai_schema import ChatCompletionRequest, CompletionRequest
from modelplex.tasks.text_generation.runtime import TextGenerationRuntime

log = logging.getLogger(__name__)

__all__ = ["OpenAIServer"]

_FINISH = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "abort"}
# gRPC status code names -> HTTP statuses (the codes modelplex's errors map to).
_HTTP = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "FAILED_PRECONDITION": 400,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
}


class OpenAIServer:
    """The HTTP door. ``await start(lookup, host, port)`` binds it (port 0: any free port, see
    :attr:`port`) and serves until ``await stop()``.

    ``models`` lists the names of the loaded text-generation models (``/v1/models``);
    ``auth`` is the server's authenticator (None: no tokens)."""

    def __init__(self, *, models: Callable[[], Sequence[str]], auth: Any = None) -> None:
        self._models = models
        self._auth = auth
        self._lookup: RuntimeLookup | None = None
        self._server: Any = None
        self._loop_task: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self, lookup: RuntimeLookup, host: str, port: int) -> int:
        """Listen on ``host:port``; the port bound."""
        try:
            import uvicorn
        except ImportError as e:
            raise ModelplexError(
                "the OpenAI-compatible door needs the openai extra: pip install modelplex[openai]"
            ) from e
        self._lookup = lookup
        config = uvicorn.Config(self._app(), host=host, port=port, log_level="warning", lifespan="off")
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        # startup/main_loop/shutdown rather than serve(): serve() would take over the process's
        # signal handlers, which are the modelplex server's.
        try:
            await server.startup()
        except SystemExit:  # uvicorn's answer to a port it cannot bind (it logged why)
            server.started = False
        if not server.started:
            raise OSError(f"the OpenAI-compatible door cannot listen on {host}:{port} (is the port in use?)")
        self._server = server
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self._loop_task = asyncio.create_task(server.main_loop(), name="modelplex-openai-door")
        log.info("OpenAI-compatible door on http://%s:%d/v1", host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop listening; streams in flight end (their generations are cancelled)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        server.config.timeout_graceful_shutdown = 1
        if self._loop_task is not None:
            await self._loop_task
        await server.shutdown()

    # -- the app ---------------------------------------------------------------------------------

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(
            routes=[
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
            ]
        )

    def _denied(self, request: Any) -> Any:
        if self._auth is None:
            return None
        header = request.headers.get("authorization")
        denied = self._auth.check([("authorization", header)] if header else [], "inference")
        if denied is None:
            return None
        return _error(_HTTP.get(denied.code.name, 401), denied.message, "authentication_error")

    async def _list_models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        if (denied := self._denied(request)) is not None:
            return denied
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "modelplex"} for name in self._models()]
        return JSONResponse({"object": "list", "data": data})

    async def _completions(self, request: Any) -> Any:
        return await self._handle(request, CompletionRequest, "cmpl", _completion_choice, _completion_delta)

    async def _chat_completions(self, request: Any) -> Any:
        return await self._handle(request, ChatCompletionRequest, "chatcmpl", _chat_choice, _chat_delta)

    async def _handle(self, request: Any, schema: type[BaseModel], prefix: str, whole: Any, delta: Any) -> Any:
        from starlette.responses import JSONResponse, StreamingResponse

        if (denied := self._denied(request)) is not None:
            return denied
        try:
            body = schema.model_validate_json(await request.body())
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            return _error(400, f"{where}: {first['msg']}", "invalid_request_error")
        chat = isinstance(body, ChatCompletionRequest)
        kind = "chat.completion" if chat else "text_completion"
        head = {"id": f"{prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model}  # type: ignore[attr-defined]
        try:
            assert self._lookup is not None
            runtime = self._lookup(body.model)  # type: ignore[attr-defined]
            assert isinstance(runtime, TextGenerationRuntime)
            generation: GenerationRequest = body.to_request()  # type: ignore[attr-defined]
            stream = runtime.generate(generation)
        except ModelplexError as e:
            return _modelplex_error(e)
        if body.stream:  # type: ignore[attr-defined]
            events = _events(stream, head, kind + (".chunk" if chat else ""), delta, body.include_usage)  # type: ignore[attr-defined]
            return StreamingResponse(events, media_type="text/event-stream")
        try:
            chunks = [chunk async for chunk in stream]
        except ModelplexError as e:
            return _modelplex_error(e)
        finally:
            stream.cancel()
        return JSONResponse({**head, "object": kind, **_whole(chunks, generation.n, whole)})


def _error(status: int, message: str, kind: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


def _modelplex_error(e: ModelplexError) -> Any:
    from modelplex.server.grpc_errors import status_of

    code = status_of(e).name
    return _error(_HTTP.get(code, 500), str(e), "invalid_request_error" if code == "INVALID_ARGUMENT" else code.lower())


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _whole(chunks: list[GenerationChunk], n: int, choice: Any) -> dict[str, Any]:
    by_index: list[list[GenerationChunk]] = [[] for _ in range(n)]
    for chunk in chunks:
        by_index[chunk.index].append(chunk)
    lasts = [mine[-1] for mine in by_index]
    usage = _usage(lasts[0].prompt_tokens, sum(last.completion_tokens for last in lasts))
    return {"choices": [choice(i, mine) for i, mine in enumerate(by_index)], "usage": usage}


def _completion_logprobs(items: Sequence[TokenLogprobs]) -> dict[str, Any]:
    return {
        "tokens": [t.token for t in items],
        "token_logprobs": [t.logprob for t in items],
        "top_logprobs": [{text: lp for _, text, lp, _ in t.top} for t in items],
        "text_offset": [],
    }


def _completion_choice(index: int, chunks: list[GenerationChunk]) -> dict[str, Any]:
    logprobs = [t for c in chunks for t in c.logprobs]
    return {
        "index": index,
        "text": "".join(c.text for c in chunks),
        "logprobs": _completion_logprobs(logprobs) if logprobs else None,
        "finish_reason": _FINISH[chunks[-1].finish_reason or "cancelled"],
    }


def _chat_logprobs(items: Sequence[TokenLogprobs]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": list(t.token_bytes),
                "top_logprobs": [{"token": text, "logprob": lp, "bytes": list(raw)} for _, text, lp, raw in t.top],
            }
            for t in items
        ]
    }


def _chat_choice(index: int, chunks: list[GenerationChunk]) -> dict[str, Any]:
    logprobs = [t for c in chunks for t in c.logprobs]
    return {
        "index": index,
        "message": {"role": "assistant", "content": "".join(c.text for c in chunks)},
        "logprobs": _chat_logprobs(logprobs) if logprobs else None,
        "finish_reason": _FINISH[chunks[-1].finish_reason or "cancelled"],
    }


def _completion_delta(chunk: GenerationChunk, first: bool) -> dict[str, Any]:
    return {
        "index": chunk.index,
        "text": chunk.text,
        "logprobs": _completion_logprobs(chunk.logprobs) if chunk.logprobs else None,
        "finish_reason": _FINISH[chunk.finish_reason] if chunk.finish_reason else None,
    }


def _chat_delta(chunk: GenerationChunk, first: bool) -> dict[str, Any]:
    delta: dict[str, Any] = {"content": chunk.text}
    if first:
        delta["role"] = "assistant"
    return {
        "index": chunk.index,
        "delta": delta,
        "logprobs": _chat_logprobs(chunk.logprobs) if chunk.logprobs else None,
        "finish_reason": _FINISH[chunk.finish_reason] if chunk.finish_reason else None,
    }


async def _events(stream: Any, head: dict[str, Any], kind: str, delta: Any, include_usage: bool) -> AsyncIterator[str]:
    """The server-sent events of a streamed completion: one per chunk, a usage one if asked, [DONE]."""
    started: set[int] = set()
    prompt, completion = 0, 0
    try:
        async for chunk in stream:
            choice = delta(chunk, chunk.index not in started)
            started.add(chunk.index)
            if chunk.finish_reason is not None:
                prompt, completion = chunk.prompt_tokens, completion + chunk.completion_tokens
            body = {**head, "object": kind, "choices": [choice]}
            if include_usage:
                body["usage"] = None
            yield f"data: {json.dumps(body)}\n\n"
        if include_usage:
            usage = {**head, "object": kind, "choices": [], "usage": _usage(prompt, completion)}
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"
    except ModelplexError as e:  # after the headers went out: the error is the last event
        yield f"data: {json.dumps({'error': {'message': str(e), 'type': type(e).__name__}})}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        stream.cancel()  # a no-op once finished; else (the client left) the sequences leave the batch

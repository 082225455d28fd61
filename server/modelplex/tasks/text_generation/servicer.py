"""modelplex.v1.TextGeneration over the text-generation runtime."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

from grpc import aio

from modelplex.server.grpc_errors import deadline_of, grpc_errors, grpc_stream_errors
from modelplex.taskdef import RuntimeLookup
from modelplex.tasks.text_generation.convert import CompleteBuilder, logprobs_to_proto, request_from_proto, set_final
from modelplex.tasks.text_generation.decode import GenerationChunk
from modelplex.tasks.text_generation.interface import ChatMessage
from modelplex.tasks.text_generation.runtime import TextGenerationRuntime
from modelplex_client.pb import text_generation_pb2 as pb
from modelplex_client.pb import text_generation_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

__all__ = ["TextGenerationServicer", "add_servicers", "request_from_proto"]


class TextGenerationServicer(pb_grpc.TextGenerationServicer):
    def __init__(self, runtimes: RuntimeLookup) -> None:
        self._runtimes = runtimes

    def _runtime(self, model: str) -> TextGenerationRuntime:
        return cast(TextGenerationRuntime, self._runtimes(model))

    @grpc_stream_errors
    async def Generate(
        self, request: pb.GenerateRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateResponse]:
        async for chunk in self._chunks(request, context):
            yield _response(pb.GenerateResponse, request, chunk)

    @grpc_stream_errors
    async def Chat(self, request: pb.ChatRequest, context: aio.ServicerContext) -> AsyncIterator[pb.ChatResponse]:
        async for chunk in self._chunks(request, context):
            yield _response(pb.ChatResponse, request, chunk)

    async def _chunks(
        self, request: pb.GenerateRequest | pb.ChatRequest | pb.CompleteRequest, context: aio.ServicerContext
    ) -> AsyncGenerator[GenerationChunk, None]:
        stream = self._runtime(request.model).generate(request_from_proto(request), deadline_of(context))
        try:
            async for chunk in stream:
                yield chunk
        finally:
            stream.cancel()  # a no-op once finished; else the sequences leave the batch

    @grpc_errors
    async def Complete(self, request: pb.CompleteRequest, context: aio.ServicerContext) -> pb.CompleteResponse:
        started = time.perf_counter()
        runtime = self._runtime(request.model)
        runtime.validate(request_from_proto(request))  # before sizing anything by the request's n
        builder = CompleteBuilder(request.n or 1)
        chunks = self._chunks(request, context)
        try:
            async for chunk in chunks:
                builder.add(chunk)
        finally:
            await chunks.aclose()
        response = builder.build(pb.CompleteResponse(request_id=request.request_id, model=request.model))
        response.total_time_ms = (time.perf_counter() - started) * 1000
        return response

    @grpc_errors
    async def Tokenize(self, request: pb.TokenizeRequest, context: aio.ServicerContext) -> pb.TokenizeResponse:
        ids, tokens = await self._runtime(request.model).tokenize(
            request.text,
            add_special_tokens=request.add_special_tokens if request.HasField("add_special_tokens") else True,
            messages=[ChatMessage(m.role, m.content) for m in request.messages],
            add_generation_prompt=(
                request.add_generation_prompt if request.HasField("add_generation_prompt") else True
            ),
        )
        return pb.TokenizeResponse(model=request.model, token_ids=ids, tokens=tokens)

    @grpc_errors
    async def Detokenize(self, request: pb.DetokenizeRequest, context: aio.ServicerContext) -> pb.DetokenizeResponse:
        skip = request.skip_special_tokens if request.HasField("skip_special_tokens") else True
        text = await self._runtime(request.model).detokenize(list(request.token_ids), skip_special_tokens=skip)
        return pb.DetokenizeResponse(model=request.model, text=text)


def _response(
    kind: type[pb.GenerateResponse] | type[pb.ChatResponse],
    request: pb.GenerateRequest | pb.ChatRequest,
    chunk: GenerationChunk,
) -> pb.GenerateResponse | pb.ChatResponse:
    message = kind(
        request_id=request.request_id,
        model=request.model,
        text=chunk.text,
        token_ids=chunk.token_ids,
        logprobs=logprobs_to_proto(chunk.logprobs),
        index=chunk.index,
    )
    if chunk.finish_reason is not None:
        set_final(message, chunk)
    return message


def add_servicers(runtimes: RuntimeLookup, server: aio.Server) -> None:
    pb_grpc.add_TextGenerationServicer_to_server(TextGenerationServicer(runtimes), server)

"""modelplex.v1.TextGeneration over the text-generation runtime."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import cast

from grpc import aio

from modelplex.server.grpc_errors import deadline_of, grpc_errors, grpc_stream_errors
from modelplex.taskdef import RuntimeLookup
from modelplex.tasks.text_generation.decode import GenerationChunk, GenerationRequest, TokenLogprobs
from modelplex.tasks.text_generation.interface import SamplingParams
from modelplex.tasks.text_generation.runtime import TextGenerationRuntime
from modelplex_client.pb import text_generation_pb2 as pb
from modelplex_client.pb import text_generation_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

__all__ = ["TextGenerationServicer", "add_servicers", "request_from_proto"]

_FINISH = {
    "length": pb.FINISH_REASON_LENGTH,
    "stop": pb.FINISH_REASON_STOP,
    "eos": pb.FINISH_REASON_EOS,
    "cancelled": pb.FINISH_REASON_CANCELLED,
}


def request_from_proto(request: pb.GenerateRequest | pb.CompleteRequest) -> GenerationRequest:
    params = SamplingParams(
        temperature=request.temperature,
        top_k=request.top_k,
        top_p=request.top_p if request.HasField("top_p") else 1.0,
        repetition_penalty=request.repetition_penalty if request.HasField("repetition_penalty") else 1.0,
        seed=request.seed if request.HasField("seed") else None,
        logprobs=request.logprobs if request.HasField("logprobs") else None,
    )
    return GenerationRequest(request.prompt, request.max_new_tokens, params, tuple(request.stop))


def _logprobs(items: tuple[TokenLogprobs, ...]) -> list[pb.TokenLogprob]:
    return [
        pb.TokenLogprob(
            token_id=t.token_id,
            token=t.token,
            logprob=t.logprob,
            top=[pb.TopLogprob(token_id=i, token=text, logprob=lp) for i, text, lp in t.top],
        )
        for t in items
    ]


class TextGenerationServicer(pb_grpc.TextGenerationServicer):
    def __init__(self, runtimes: RuntimeLookup) -> None:
        self._runtimes = runtimes

    def _runtime(self, model: str) -> TextGenerationRuntime:
        return cast(TextGenerationRuntime, self._runtimes(model))

    @grpc_stream_errors
    async def Generate(
        self, request: pb.GenerateRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateResponse]:
        stream = self._runtime(request.model).generate(request_from_proto(request), deadline_of(context))
        try:
            async for chunk in stream:
                yield self._response(request, chunk)
        finally:
            stream.cancel()  # a no-op once finished; else the sequence leaves the batch

    def _response(self, request: pb.GenerateRequest, chunk: GenerationChunk) -> pb.GenerateResponse:
        message = pb.GenerateResponse(
            request_id=request.request_id,
            model=request.model,
            text=chunk.text,
            token_ids=chunk.token_ids,
            logprobs=_logprobs(chunk.logprobs),
        )
        if chunk.finish_reason is not None:
            _set_final(message, chunk)
        return message

    @grpc_errors
    async def Complete(self, request: pb.CompleteRequest, context: aio.ServicerContext) -> pb.CompleteResponse:
        started = time.perf_counter()
        stream = self._runtime(request.model).generate(request_from_proto(request), deadline_of(context))
        response = pb.CompleteResponse(request_id=request.request_id, model=request.model)
        texts = []
        try:
            async for chunk in stream:
                texts.append(chunk.text)
                response.token_ids.extend(chunk.token_ids)
                response.logprobs.extend(_logprobs(chunk.logprobs))
                last = chunk
        finally:
            stream.cancel()
        response.text = "".join(texts)
        _set_final(response, last)
        response.total_time_ms = (time.perf_counter() - started) * 1000
        return response


def _set_final(message: pb.GenerateResponse | pb.CompleteResponse, last: GenerationChunk) -> None:
    """The fields of a stream's last chunk, on a Generate or Complete response."""
    message.finish_reason = _FINISH[last.finish_reason or "cancelled"]
    message.usage.prompt_tokens = last.prompt_tokens
    message.usage.completion_tokens = last.completion_tokens
    message.time_to_first_token_ms = last.time_to_first_token_s * 1000
    message.stop_sequence = last.stop_sequence


def add_servicers(runtimes: RuntimeLookup, server: aio.Server) -> None:
    pb_grpc.add_TextGenerationServicer_to_server(TextGenerationServicer(runtimes), server)

"""Protobuf to domain types and back, for the TextGeneration servicer (and the HTTP door's tests)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modelplex.tasks.text_generation.decode import GenerationChunk, GenerationRequest, TokenLogprobs
from modelplex.tasks.text_generation.interface import ChatMessage, SamplingParams
from modelplex_client.pb import text_generation_pb2 as pb

__all__ = ["FINISH", "CompleteBuilder", "logprobs_to_proto", "request_from_proto", "set_final"]

FINISH = {
    "length": pb.FINISH_REASON_LENGTH,
    "stop": pb.FINISH_REASON_STOP,
    "eos": pb.FINISH_REASON_EOS,
    "cancelled": pb.FINISH_REASON_CANCELLED,
}


def _optional(message: Any, field: str, default: Any) -> Any:
    return getattr(message, field) if message.HasField(field) else default


def request_from_proto(request: pb.GenerateRequest | pb.CompleteRequest | pb.ChatRequest) -> GenerationRequest:
    """The request a Generate, Complete or Chat message describes (not validated yet)."""
    params = SamplingParams(
        temperature=request.temperature,
        top_k=request.top_k,
        top_p=_optional(request, "top_p", 1.0),
        repetition_penalty=_optional(request, "repetition_penalty", 1.0),
        seed=_optional(request, "seed", None),
        logprobs=_optional(request, "logprobs", None),
        min_new_tokens=request.min_new_tokens,
        stop_token_ids=tuple(request.stop_token_ids),
        ignore_eos=request.ignore_eos,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        min_p=request.min_p,
        logit_bias=tuple(sorted(request.logit_bias.items())),
    )
    common = dict(
        max_new_tokens=request.max_new_tokens,
        params=params,
        stop=tuple(request.stop),
        skip_special_tokens=_optional(request, "skip_special_tokens", True),
        n=request.n or 1,
    )
    if isinstance(request, pb.ChatRequest):
        return GenerationRequest(
            "",
            messages=tuple(ChatMessage(m.role, m.content) for m in request.messages),
            add_generation_prompt=_optional(request, "add_generation_prompt", True),
            **common,  # type: ignore[arg-type]
        )
    return GenerationRequest(
        request.prompt,
        prompt_token_ids=tuple(request.prompt_token_ids),
        add_special_tokens=_optional(request, "add_special_tokens", True),
        **common,  # type: ignore[arg-type]
    )


def logprobs_to_proto(items: Iterable[TokenLogprobs]) -> list[pb.TokenLogprob]:
    return [
        pb.TokenLogprob(
            token_id=t.token_id,
            token=t.token,
            logprob=t.logprob,
            bytes=t.token_bytes,
            top=[pb.TopLogprob(token_id=i, token=text, logprob=lp, bytes=raw) for i, text, lp, raw in t.top],
        )
        for t in items
    ]


def set_final(message: Any, last: GenerationChunk) -> None:
    """The fields of a stream's last chunk, on a Generate, Chat or Complete response."""
    message.finish_reason = FINISH[last.finish_reason or "cancelled"]
    message.usage.prompt_tokens = last.prompt_tokens
    message.usage.completion_tokens = last.completion_tokens
    message.time_to_first_token_ms = last.time_to_first_token_s * 1000
    message.stop_sequence = last.stop_sequence
    if last.stop_token_id is not None:
        message.stop_token_id = last.stop_token_id


class CompleteBuilder:
    """Gathers the chunks of a Complete call's choices into its response."""

    def __init__(self, n: int) -> None:
        self.choices = [pb.CompleteChoice(index=i) for i in range(n)]
        self.texts: list[list[str]] = [[] for _ in range(n)]
        self.last: list[GenerationChunk | None] = [None] * n

    def add(self, chunk: GenerationChunk) -> None:
        choice = self.choices[chunk.index]
        self.texts[chunk.index].append(chunk.text)
        choice.token_ids.extend(chunk.token_ids)
        choice.logprobs.extend(logprobs_to_proto(chunk.logprobs))
        if chunk.finish_reason is not None:
            self.last[chunk.index] = chunk
            choice.finish_reason = FINISH[chunk.finish_reason]
            choice.completion_tokens = chunk.completion_tokens
            choice.stop_sequence = chunk.stop_sequence
            if chunk.stop_token_id is not None:
                choice.stop_token_id = chunk.stop_token_id

    def build(self, response: pb.CompleteResponse) -> pb.CompleteResponse:
        for choice, texts in zip(self.choices, self.texts, strict=True):
            choice.text = "".join(texts)
        first, last = self.choices[0], self.last[0]
        assert last is not None, "the stream ended without its last chunk"
        response.text = first.text
        response.token_ids.extend(first.token_ids)
        response.logprobs.extend(first.logprobs)
        set_final(response, last)
        response.usage.completion_tokens = sum(c.completion_tokens for c in self.choices)
        response.choices.extend(self.choices)
        return response

"""The OpenAI-compatible HTTP door's requests: OpenAI's fields (and vLLM's extensions), as
pydantic models, turned into the runtime's :class:`GenerationRequest`.

OpenAI's defaults are kept where they differ from the gRPC API's: ``temperature`` 1 and, for
completions, ``max_tokens`` 16; a chat's ``max_tokens`` unset means up to the model's limit.
Fields this door does not know are ignored, as OpenAI's newer SDKs may send more.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelplex.errors import InvalidInputError
from modelplex.tasks.text_generation.decode import GenerationRequest
from modelplex.tasks.text_generation.interface import ChatMessage, SamplingParams

__all__ = ["ChatCompletionRequest", "CompletionRequest"]


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    # vLLM's extensions
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool | None = None
    stop_token_ids: list[int] | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))

    def _params(self, logprobs: int | None) -> SamplingParams:
        try:
            bias = tuple(sorted((int(k), float(v)) for k, v in (self.logit_bias or {}).items()))
        except ValueError:
            raise InvalidInputError("logit_bias keys must be token ids (integers as strings)") from None
        return SamplingParams(
            temperature=1.0 if self.temperature is None else self.temperature,
            top_k=self.top_k or 0,
            top_p=1.0 if self.top_p is None else self.top_p,
            repetition_penalty=1.0 if self.repetition_penalty is None else self.repetition_penalty,
            seed=self.seed % 2**64 if self.seed is not None else None,
            logprobs=logprobs,
            min_new_tokens=self.min_tokens or 0,
            stop_token_ids=tuple(self.stop_token_ids or ()),
            ignore_eos=self.ignore_eos,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            min_p=self.min_p or 0.0,
            logit_bias=bias,
        )

    def _stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: one prompt (text, or token ids)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = 16
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    add_special_tokens: bool | None = None

    def to_request(self) -> GenerationRequest:
        prompt, ids = self._prompt()
        return GenerationRequest(
            prompt,
            self.max_tokens or 0,
            self._params(self.logprobs),
            self._stops(),
            prompt_token_ids=ids,
            add_special_tokens=True if self.add_special_tokens is None else self.add_special_tokens,
            skip_special_tokens=True if self.skip_special_tokens is None else self.skip_special_tokens,
            n=1 if self.n is None else self.n,
        )

    def _prompt(self) -> tuple[str, tuple[int, ...]]:
        if self.echo:
            raise InvalidInputError("echo is not supported: the response has the completion only")
        p = self.prompt
        if isinstance(p, str):
            return p, ()
        if p and all(isinstance(x, int) for x in p):
            return "", tuple(p)  # type: ignore[arg-type]
        if len(p) == 1:
            one = p[0]
            return (one, ()) if isinstance(one, str) else ("", tuple(one))  # type: ignore[arg-type]
        raise InvalidInputError(f"give one prompt per request (a string or a list of token ids), not {len(p)}")


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[_Part] | None = None

    def text(self, index: int) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise InvalidInputError(f"message {index}: only text content parts are supported, not {part.type!r}")
            parts.append(part.text)
        return "".join(parts)


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``: a conversation rendered by the model's chat template."""

    messages: list[_Message]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    add_generation_prompt: bool = True
    response_format: dict[str, Any] | None = None

    def to_request(self) -> GenerationRequest:
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise InvalidInputError(f"response_format {self.response_format.get('type')!r} is not supported")
        if not self.messages:
            raise InvalidInputError("messages must hold at least one message")
        messages = tuple(ChatMessage(m.role, m.text(i)) for i, m in enumerate(self.messages))
        limit = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        return GenerationRequest(
            "",
            limit or 0,
            self._params((self.top_logprobs or 0) if self.logprobs else None),
            self._stops(),
            skip_special_tokens=True if self.skip_special_tokens is None else self.skip_special_tokens,
            messages=messages,
            add_generation_prompt=self.add_generation_prompt,
            n=1 if self.n is None else self.n,
        )

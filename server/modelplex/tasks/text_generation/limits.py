"""The limits of a text-generation request, and its validation (before any work is queued).

Every bad parameter is an InvalidInputError whose message names the parameter, the
range it takes and the value given, so that a client sees INVALID_ARGUMENT with
what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelplex.errors import InvalidInputError
from modelplex.tasks.text_generation.decode import GenerationRequest

__all__ = [
    "CHARS_PER_TOKEN",
    "MAX_CHOICES",
    "MAX_LOGIT_BIAS",
    "MAX_LOGPROBS",
    "MAX_MESSAGES",
    "MAX_STOP_LENGTH",
    "MAX_STOP_SEQUENCES",
    "MAX_STOP_TOKENS",
    "Limits",
]

MAX_STOP_SEQUENCES = 16
"""Stop sequences one request may give."""
MAX_STOP_LENGTH = 256
"""Characters in one stop sequence."""
MAX_STOP_TOKENS = 16
"""Stop token ids one request may give."""
MAX_LOGPROBS = 20
"""Alternatives per token a request may ask for."""
MAX_CHOICES = 16
"""Choices (``n``) one request may ask for."""
MAX_LOGIT_BIAS = 300
"""Tokens one request may bias (OpenAI's limit)."""
MAX_MESSAGES = 1024
"""Messages in one chat request."""
CHARS_PER_TOKEN = 32
"""Characters per token of the context window a prompt may have, unless max_prompt_chars says."""


@dataclass(frozen=True)
class Limits:
    """What one model takes."""

    name: str
    max_new_tokens: int
    max_prompt_chars: int
    vocab_size: int
    """0: token ids are not checked against the vocabulary."""

    def validate(self, request: GenerationRequest) -> None:
        """Raise InvalidInputError naming the first bad parameter and its range."""
        self._prompt(request)
        p = request.params
        if not 0 <= request.max_new_tokens <= self.max_new_tokens:
            raise InvalidInputError(
                f"max_new_tokens must be between 1 and {self.max_new_tokens} for model {self.name!r} "
                f"(0 means {self.max_new_tokens}), got {request.max_new_tokens}"
            )
        if not 0 <= p.min_new_tokens <= self.max_new_tokens:
            raise InvalidInputError(
                f"min_new_tokens must be between 0 and {self.max_new_tokens}, got {p.min_new_tokens}"
            )
        if request.max_new_tokens and p.min_new_tokens > request.max_new_tokens:
            raise InvalidInputError(
                f"min_new_tokens ({p.min_new_tokens}) is more than max_new_tokens ({request.max_new_tokens})"
            )
        if not math.isfinite(p.temperature) or p.temperature < 0:
            raise InvalidInputError(f"temperature must be >= 0 (0 is greedy), got {p.temperature}")
        if p.top_k < 0:
            raise InvalidInputError(f"top_k must be >= 0 (0 is off), got {p.top_k}")
        if not (0 < p.top_p <= 1):
            raise InvalidInputError(f"top_p must be in (0, 1] (1 is off), got {p.top_p}")
        if not (0 <= p.min_p <= 1):
            raise InvalidInputError(f"min_p must be in [0, 1] (0 is off), got {p.min_p}")
        if not math.isfinite(p.repetition_penalty) or p.repetition_penalty <= 0:
            raise InvalidInputError(f"repetition_penalty must be > 0 (1 is off), got {p.repetition_penalty}")
        for key, value in (("presence_penalty", p.presence_penalty), ("frequency_penalty", p.frequency_penalty)):
            if not -2 <= value <= 2:
                raise InvalidInputError(f"{key} must be between -2 and 2 (0 is off), got {value}")
        if p.logprobs is not None and not 0 <= p.logprobs <= MAX_LOGPROBS:
            raise InvalidInputError(f"logprobs must be between 0 and {MAX_LOGPROBS}, got {p.logprobs}")
        if not 1 <= request.n <= MAX_CHOICES:
            raise InvalidInputError(f"n must be between 1 and {MAX_CHOICES} (0 means 1), got {request.n}")
        if len(request.stop) > MAX_STOP_SEQUENCES:
            raise InvalidInputError(f"{len(request.stop)} stop sequences; at most {MAX_STOP_SEQUENCES} are allowed")
        for i, s in enumerate(request.stop):
            if not s or len(s) > MAX_STOP_LENGTH:
                raise InvalidInputError(f"stop sequence {i} must have 1 to {MAX_STOP_LENGTH} characters")
        if len(p.stop_token_ids) > MAX_STOP_TOKENS:
            raise InvalidInputError(f"{len(p.stop_token_ids)} stop token ids; at most {MAX_STOP_TOKENS} are allowed")
        self.token_ids("stop_token_ids", p.stop_token_ids)
        if len(p.logit_bias) > MAX_LOGIT_BIAS:
            raise InvalidInputError(f"logit_bias has {len(p.logit_bias)} tokens; at most {MAX_LOGIT_BIAS} are allowed")
        self.token_ids("logit_bias", [t for t, _ in p.logit_bias])
        for token, bias in p.logit_bias:
            if not -100 <= bias <= 100:
                raise InvalidInputError(f"logit_bias of token {token} must be between -100 and 100, got {bias}")

    def _prompt(self, request: GenerationRequest) -> None:
        given = [what for what, v in (("prompt", request.prompt), ("prompt_token_ids", request.prompt_token_ids)) if v]
        if request.messages:
            given.append("messages")
        if len(given) > 1:
            raise InvalidInputError(
                f"give only one of prompt, prompt_token_ids and messages; got {' and '.join(given)}"
            )
        chars = len(request.prompt) + sum(len(m.content) + len(m.role) for m in request.messages)
        if chars > self.max_prompt_chars:
            raise InvalidInputError(
                f"the prompt has {chars:,} characters; model {self.name!r} takes at most "
                f"{self.max_prompt_chars:,} (max_prompt_chars), before it is even tokenized"
            )
        if len(request.messages) > MAX_MESSAGES:
            raise InvalidInputError(f"{len(request.messages)} messages; at most {MAX_MESSAGES} are allowed")
        for i, m in enumerate(request.messages):
            if not m.role:
                raise InvalidInputError(f"message {i} has no role (system, user, assistant, ...)")
        if len(request.prompt_token_ids) > self.max_prompt_chars:
            raise InvalidInputError(f"prompt_token_ids has {len(request.prompt_token_ids):,} tokens: too many")
        self.token_ids("prompt_token_ids", request.prompt_token_ids)

    def token_ids(self, what: str, ids: tuple[int, ...] | list[int]) -> None:
        """InvalidInputError naming the first id outside the vocabulary."""
        for i, token in enumerate(ids):
            if token < 0 or (self.vocab_size and token >= self.vocab_size):
                top = f"{self.vocab_size - 1}" if self.vocab_size else "the vocabulary's last"
                raise InvalidInputError(f"{what}[{i}] is {token}, not a token id of model {self.name!r} (0 to {top})")

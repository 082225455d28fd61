"""The thread side of text generation: admitting, stepping and releasing sequences.

Everything here runs on the instance's thread, inside one step of the step scheduler:
it frees the sequences leaving, starts the joining ones from the tokens computed at
submission, decodes one token for every sequence together, and turns each token into
a chunk (incremental detokenization, stop sequences, limits).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelplex.errors import ModelplexError
from modelplex.server.runtimes.base import RuntimeStats, inference_error
from modelplex.server.runtimes.steps import StepSession
from modelplex.tasks.text_generation.interface import NextToken, SamplingParams, TextGenerator
from modelplex.tasks.text_generation.output import IncrementalDetokenizer, StopMatcher

log = logging.getLogger(__name__)

__all__ = ["Decoder", "GenerationChunk", "GenerationRequest", "GenerationStream", "TokenLogprobs"]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One Generate or Complete call, as the core sees it."""

    prompt: str
    max_new_tokens: int
    params: SamplingParams = SamplingParams()
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    """A generated token's log-probability and the most likely alternatives (id, text, logprob)."""

    token_id: int
    token: str
    logprob: float
    top: tuple[tuple[int, str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationChunk:
    """What one decode step gave one stream. The last chunk has ``finish_reason``."""

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[TokenLogprobs, ...] = ()
    finish_reason: str | None = None
    """``"length"``, ``"stop"``, ``"eos"`` or ``"cancelled"`` on the last chunk."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float = 0.0
    stop_sequence: str = ""


class GenerationStream(StepSession[GenerationChunk]):
    """The chunks of one request, as an async iterator. ``cancel()`` (or leaving the
    iteration early and calling it) stops the generation at its next decode step."""

    def __init__(self, request: GenerationRequest, deadline: float | None) -> None:
        super().__init__(deadline)
        self.request = request
        self.arrived = time.perf_counter()
        self.prompt_ids: list[int] | None = None
        """The prompt's tokens, computed at submission; handed to ``start`` when admitted."""
        # Thread-side state, owned by the lane's instance thread once admitted.
        self.sequence: Any = None
        self.prompt_tokens = 0
        self.generated = 0
        self.limit = 0
        self.first_token_s = 0.0
        self.detok: IncrementalDetokenizer | None = None
        self.stops = StopMatcher(request.stop)

    def final(
        self, text: str, token_ids: tuple[int, ...], logprobs: tuple[TokenLogprobs, ...], reason: str
    ) -> GenerationChunk:
        """The stream's last chunk (marks it done)."""
        self.done = True
        return GenerationChunk(
            text,
            token_ids,
            logprobs,
            finish_reason=reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.generated,
            time_to_first_token_s=self.first_token_s,
            stop_sequence=self.stops.matched or "",
        )

    def cancelled_chunk(self) -> GenerationChunk:
        return self.final("", (), (), "cancelled")


Event = tuple[GenerationStream, GenerationChunk | BaseException]


class Decoder:
    """The step, admit and release functions of one model's step scheduler."""

    def __init__(self, name: str, stats: RuntimeStats) -> None:
        self.name = name
        self.stats = stats

    def step(
        self,
        model: TextGenerator,
        joining: Sequence[GenerationStream],
        running: Sequence[GenerationStream],
        leaving: Sequence[GenerationStream],
    ) -> list[Event]:
        """On the instance's thread: free the leavers, admit the joiners, decode one step."""
        events: list[Event] = []
        self.release(model, leaving)
        batch = list(running)
        for s in joining:
            try:
                self._admit(model, s)
            except Exception as e:
                s.done = True
                events.append((s, self._error(e)))
                continue
            batch.append(s)
        if not batch:
            return events
        self.stats.batch_sizes.observe(len(batch))
        try:
            tokens = model.step([s.sequence for s in batch])
            if len(tokens) != len(batch):
                raise RuntimeError(f"step returned {len(tokens)} tokens for {len(batch)} sequences")
        except Exception as e:
            err = self._error(e)
            for s in batch:
                s.done = True
                events.append((s, err))
            self.release(model, batch)
            return events
        now = time.perf_counter()
        for s, token in zip(batch, tokens, strict=True):
            item: GenerationChunk | BaseException
            if isinstance(token, BaseException):  # this sequence alone failed
                s.done = True
                item = self._error(token)
            else:
                try:
                    item = self._chunk(model, s, token, now)
                except Exception as e:
                    s.done = True
                    item = inference_error(self.name, e)
            events.append((s, item))
            if s.done:
                self.release(model, [s])
        return events

    def _error(self, e: BaseException) -> BaseException:
        return e if isinstance(e, ModelplexError) else inference_error(self.name, e)

    def _admit(self, model: TextGenerator, s: GenerationStream) -> None:
        """Start the sequence from the tokens computed (and checked) at submission."""
        ids, s.prompt_ids = s.prompt_ids, None
        assert ids is not None, "a stream joins only once its prompt is tokenized"
        s.detok = IncrementalDetokenizer(model.detokenize)
        s.sequence = model.start(ids, s.request.params)

    def release(self, model: TextGenerator, streams: Sequence[GenerationStream]) -> None:
        """Free the streams' sequences (their KV caches); never raises."""
        for s in streams:
            seq, s.sequence = s.sequence, None
            if seq is None:
                continue
            try:
                model.release(seq)
            except Exception:
                log.exception("model %r failed to release a sequence", self.name)

    def _chunk(self, model: TextGenerator, s: GenerationStream, token: NextToken, now: float) -> GenerationChunk:
        assert s.detok is not None
        s.generated += 1
        self.stats.outputs += 1
        if s.generated == 1:
            s.first_token_s = now - s.arrived
        logprobs = _logprobs(model, token, s.request.params)
        eos = model.is_eos(token.token_id)
        text = s.stops.feed("" if eos else s.detok.add(token.token_id))
        if s.stops.matched is not None:
            return s.final(text, (token.token_id,), logprobs, "stop")
        if eos or s.generated >= s.limit:
            text += s.stops.feed(s.detok.flush())
            reason = "stop" if s.stops.matched is not None else ("eos" if eos else "length")
            if s.stops.matched is None:
                text += s.stops.flush()
            return s.final(text, (token.token_id,), logprobs, reason)
        return GenerationChunk(text, (token.token_id,), logprobs)


def _logprobs(model: TextGenerator, token: NextToken, params: SamplingParams) -> tuple[TokenLogprobs, ...]:
    if params.logprobs is None or token.logprob is None:
        return ()
    top = tuple((t.token_id, model.detokenize([t.token_id]), t.logprob) for t in token.top[: params.logprobs])
    return (TokenLogprobs(token.token_id, model.detokenize([token.token_id]), token.logprob, top),)

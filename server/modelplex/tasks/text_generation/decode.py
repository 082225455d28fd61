"""The thread side of text generation: admitting, stepping and releasing sequences.

Everything here runs on the instance's thread, inside one step of the step scheduler:
it frees the sequences leaving, starts the joining ones from the tokens computed at
submission, decodes one token for every sequence together, and turns each token into
a chunk (incremental detokenization, stop sequences, limits).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelplex.server.runtimes.base import RuntimeStats, inference_error
from modelplex.server.runtimes.steps import StepSession, run_step, step_error
from modelplex.tasks.text_generation.interface import ChatMessage, NextToken, SamplingParams, TextGenerator
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
    prompt_token_ids: tuple[int, ...] = ()
    """The prompt as token ids, used as they are (``prompt`` is empty then)."""
    add_special_tokens: bool = True
    """Whether tokenizing the prompt adds the model's special tokens (BOS)."""
    skip_special_tokens: bool = True
    """Whether special tokens are left out of the text deltas."""
    messages: tuple[ChatMessage, ...] = ()
    """A conversation, rendered by the model's chat template (``prompt`` is empty then)."""
    add_generation_prompt: bool = True
    """Whether the template ends the rendered conversation with the assistant's turn opening."""
    n: int = 1
    """Choices to generate for the prompt."""


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    """A generated token's log-probability and the most likely alternatives (id, text, logprob)."""

    token_id: int
    token: str
    logprob: float
    top: tuple[tuple[int, str, float, bytes], ...] = ()
    """The most likely tokens: (id, text, logprob, bytes), best first."""
    token_bytes: bytes = b""
    """The token's raw bytes (a byte-level token may hold part of a character)."""


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
    stop_token_id: int | None = None
    """On the last chunk, when one of the request's ``stop_token_ids`` ended it."""
    index: int = 0
    """Which of the request's ``n`` choices the chunk belongs to."""


class GenerationStream(StepSession[GenerationChunk]):
    """The chunks of one request, as an async iterator. ``cancel()`` (or leaving the
    iteration early and calling it) stops the generation at its next decode step."""

    def __init__(self, request: GenerationRequest, deadline: float | None, index: int = 0) -> None:
        super().__init__(deadline)
        self.request = request
        self.index = index
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
        self.stop_token: int | None = None

    def chunk(self, text: str, token_ids: tuple[int, ...], logprobs: tuple[TokenLogprobs, ...]) -> GenerationChunk:
        """A chunk of this stream that is not its last."""
        return GenerationChunk(text, token_ids, logprobs, index=self.index)

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
            stop_token_id=self.stop_token,
            index=self.index,
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
        emit: Callable[[list[Event]], None] | None = None,
    ) -> list[Event]:
        """On the instance's thread: free the leavers, admit the joiners, decode one step.

        With ``emit`` and running sequences, the joiners' prompts run first (the model's
        ``prefill``) and their first tokens are emitted at once; the step of the running
        ones then takes the joiners that got one, for their second."""
        events: list[Event] = []
        self.release(model, leaving)
        admitted = []
        for s in joining:
            try:
                self._admit(model, s)
            except Exception as e:
                s.done = True
                events.append((s, self._error(e)))
                continue
            admitted.append(s)
        if emit is not None and running and admitted:
            first: list[Event] = []
            declined: list[bool] = []

            def prefill() -> Sequence[NextToken | Exception | None]:
                out = model.prefill([s.sequence for s in admitted])
                if out is None:  # the model leaves them to step() after all
                    declined.append(True)
                    return [None] * len(admitted)
                return out

            prefilled = run_step(
                self.name, model, admitted, prefill, release=self.release, events=first, what="sequences"
            )
            if prefilled is None:  # the prefill failed: the joiners ended with its error
                admitted = []
            elif not declined:
                self._take(model, admitted, prefilled, first)
                # Still prefilling (a long prompt in chunks): its next chunk is the next step's.
                admitted = [s for s, t in zip(admitted, prefilled, strict=True) if t is not None and not s.done]
            emit(first)
        batch = [*running, *admitted]
        if not batch:
            return events
        self.stats.batch_sizes.observe(len(batch))
        tokens = run_step(
            self.name,
            model,
            batch,
            lambda: model.step([s.sequence for s in batch]),
            release=self.release,
            events=events,
            what="sequences",
        )
        if tokens is None:
            return events
        self._take(model, batch, tokens, events)
        return events

    def _take(
        self,
        model: TextGenerator,
        batch: Sequence[GenerationStream],
        tokens: Sequence[NextToken | Exception | None],
        events: list[Event],
    ) -> None:
        """Each sequence's token as its stream's next chunk (or failure) in ``events``."""
        now = time.perf_counter()
        for s, token in zip(batch, tokens, strict=True):
            item: GenerationChunk | BaseException
            if token is None:  # its prompt is still being prefilled
                continue
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

    def _error(self, e: BaseException) -> BaseException:
        return step_error(self.name, e)

    def _admit(self, model: TextGenerator, s: GenerationStream) -> None:
        """Start the sequence from the tokens computed (and checked) at submission."""
        ids, s.prompt_ids = s.prompt_ids, None
        assert ids is not None, "a stream joins only once its prompt is tokenized"
        if s.request.skip_special_tokens:
            s.detok = IncrementalDetokenizer(model.detokenize)
        else:
            s.detok = IncrementalDetokenizer(lambda ids: model.detokenize(ids, skip_special_tokens=False))
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
        params = s.request.params
        logprobs = _logprobs(model, token, params)
        tid = token.token_id
        eos = model.is_eos(tid) and not params.ignore_eos
        if tid in params.stop_token_ids:
            s.stop_token = tid
        # An ending token's own text is not part of the output (an ignored EOS's is).
        ends = eos or s.stop_token is not None
        text = s.stops.feed("" if ends else s.detok.add(tid))
        if s.stops.matched is not None:
            s.stop_token = None
            return s.final(text, (tid,), logprobs, "stop")
        if ends or s.generated >= s.limit:
            text += s.stops.feed(s.detok.flush())
            if s.stops.matched is not None:
                s.stop_token = None
                return s.final(text, (tid,), logprobs, "stop")
            text += s.stops.flush()
            reason = "stop" if s.stop_token is not None else ("eos" if eos else "length")
            return s.final(text, (tid,), logprobs, reason)
        return s.chunk(text, (tid,), logprobs)


def _logprobs(model: TextGenerator, token: NextToken, params: SamplingParams) -> tuple[TokenLogprobs, ...]:
    if params.logprobs is None or token.logprob is None:
        return ()

    def text(token_id: int) -> str:
        return model.detokenize([token_id], skip_special_tokens=False)

    top = tuple(
        (t.token_id, text(t.token_id), t.logprob, model.token_bytes(t.token_id)) for t in token.top[: params.logprobs]
    )
    return (TokenLogprobs(token.token_id, text(token.token_id), token.logprob, top, model.token_bytes(token.token_id)),)

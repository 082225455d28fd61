"""Text generation with continuous batching over a model's instances.

Each instance has a *lane*: the sequences running on it and those waiting to
join. A driver task per lane loops on the event loop: it drops the sequences
whose client went away or whose deadline passed, admits waiting ones up to the
model's ``max_batch_size``, and runs one decode step of the whole lane on the
instance's thread (prefilling the new ones first). So requests join and leave
the running batch between decode steps and never wait for each other to finish.

A request is tokenized when it is submitted, before it waits for a batch slot: on
the runtime's small tokenizing executor (``TOKENIZE_THREADS`` threads, never the
instance's thread, never the event loop), which also checks the prompt against the
context window. So a prompt the model cannot take fails at once, even while every
slot is busy, and the tokens it computed are the ones the sequence starts from.
Everything else touching the model, detokenization included, runs on the instance's
thread; the event loop only moves chunks into queues.

Backpressure: a stream whose client lets ``MAX_PENDING_CHUNKS`` chunks pile up unread sits
the next steps out (it keeps its slot and its cache) until the client reads again.

Unloading (``stop``) lets the step in flight finish, then ends every stream it knows:
those that finished in that step keep their finish reason, the others (running, joining,
waiting) end with ``"cancelled"``; a later ``generate`` raises ModelNotReadyError.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from modelplex.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    ModelplexError,
    QueueFullError,
)
from modelplex.server.config import ModelConfig
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import TaskRuntime, inference_error
from modelplex.server.runtimes.text_output import IncrementalDetokenizer, StopMatcher
from modelplex.tasks import NextToken, SamplingParams, TextGenerator

log = logging.getLogger(__name__)

__all__ = [
    "MAX_LOGPROBS",
    "MAX_STOP_SEQUENCES",
    "TOKENIZE_THREADS",
    "GenerationChunk",
    "GenerationRequest",
    "GenerationStream",
    "TextGenerationRuntime",
    "TokenLogprobs",
]

MAX_STOP_SEQUENCES = 16
"""Stop sequences one request may give."""
MAX_STOP_LENGTH = 256
"""Characters in one stop sequence."""
MAX_LOGPROBS = 20
"""Alternatives per token a request may ask for."""
MAX_PENDING_CHUNKS = 64
"""Undelivered chunks of one stream after which it is paused (skips steps) until its client reads."""
TOKENIZE_THREADS = 2
"""Threads of a model's tokenizing executor, which tokenizes and checks prompts at submission."""


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


class GenerationStream:
    """The chunks of one request, as an async iterator. ``cancel()`` (or leaving the
    iteration early and calling it) stops the generation at its next decode step."""

    def __init__(self, runtime: TextGenerationRuntime, request: GenerationRequest, deadline: float | None) -> None:
        self.request = request
        self.deadline = deadline
        self.arrived = time.perf_counter()
        self.queue: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        self.cancelled = False
        self.done = False
        """Set once the last chunk (or an error) is queued; only ever on the instance thread or loop."""
        self.lane: _Lane | None = None
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

    def cancel(self) -> None:
        """Stop generating: the sequence leaves the batch before the next step."""
        if not self.done and not self.cancelled:
            self.cancelled = True
            if self.lane is not None:
                self.lane.wake.set()

    def __aiter__(self) -> AsyncIterator[GenerationChunk]:
        return self._chunks()

    @property
    def paused(self) -> bool:
        """Too many chunks wait unread: the stream sits the next steps out."""
        return self.queue.qsize() >= MAX_PENDING_CHUNKS

    async def _chunks(self) -> AsyncIterator[GenerationChunk]:
        while True:
            item = await self.queue.get()
            if self.lane is not None and self.queue.qsize() == MAX_PENDING_CHUNKS - 1:
                self.lane.wake.set()  # it was paused: it may run again
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.finish_reason is not None:
                return


@dataclass
class _Lane:
    """The sequences of one instance: running and waiting to join."""

    instance: Instance
    tokenizing: set[GenerationStream] = field(default_factory=set)
    """Submitted, their prompts being tokenized and checked; they join ``waiting`` next."""
    running: list[GenerationStream] = field(default_factory=list)
    waiting: collections.deque[GenerationStream] = field(default_factory=collections.deque)
    joining: list[GenerationStream] = field(default_factory=list)
    """Taken off ``waiting`` for the step in flight, which admits them."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def load(self) -> int:
        return len(self.tokenizing) + len(self.running) + len(self.waiting)


_Event = tuple[GenerationStream, GenerationChunk | BaseException]


class TextGenerationRuntime(TaskRuntime):
    """Validates requests, spreads them over the instances' lanes, drives the decode loops."""

    def __init__(self, name: str, config: ModelConfig, instances: Sequence[Instance]) -> None:
        super().__init__(name, config, instances)
        first = instances[0].model
        assert isinstance(first, TextGenerator), f"{type(first).__name__} is not a TextGenerator"
        self.context_length = int(first.context_length)
        self.is_encoder_decoder = bool(first.is_encoder_decoder)
        self.max_new_tokens = int(first.max_new_tokens)
        self._batch = max(1, int(first.max_batch_size))
        self._lanes: list[_Lane] = []
        self._drivers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._tokenizer_pool: ThreadPoolExecutor | None = None

    @property
    def max_batch_size(self) -> int:
        return self._batch

    @property
    def running(self) -> int:
        """Sequences in a batch now, over all instances."""
        return sum(len(lane.running) for lane in self._lanes)

    @property
    def waiting(self) -> int:
        """Sequences waiting for a batch slot, over all instances."""
        return sum(len(lane.waiting) for lane in self._lanes)

    @property
    def tokenizing(self) -> int:
        """Requests submitted whose prompts are being tokenized, over all instances."""
        return sum(len(lane.tokenizing) for lane in self._lanes)

    def start(self) -> None:
        self._tokenizer_pool = ThreadPoolExecutor(
            TOKENIZE_THREADS, thread_name_prefix=f"modelplex-{self.name}-tokenize"
        )
        for inst in self.instances:
            lane = _Lane(inst)
            self._lanes.append(lane)
            self._drivers.append(asyncio.create_task(self._drive(lane), name=f"{self.name}-decode-{inst.index}"))

    async def stop(self) -> None:
        """Let each lane's step in flight finish, then end every stream: those that finished in
        that step keep their finish reason, all others (those still being tokenized included)
        end with ``"cancelled"``."""
        self._stopping = True
        lanes, self._lanes = self._lanes, []  # a late generate() raises ModelNotReadyError
        for lane in lanes:
            tokenizing, lane.tokenizing = lane.tokenizing, set()
            for s in tokenizing:
                if not s.done:
                    _put(s, self._final(s, "", (), (), "cancelled"))
            lane.wake.set()
        if self._tokenizer_pool is not None:
            self._tokenizer_pool.shutdown(wait=False, cancel_futures=True)
            self._tokenizer_pool = None
        await asyncio.gather(*self._drivers, return_exceptions=True)
        self._drivers.clear()
        for lane in lanes:
            streams = [*lane.running, *lane.joining, *lane.waiting]
            lane.running, lane.joining, lane.waiting = [], [], collections.deque()
            for s in streams:
                if not s.done:
                    _put(s, self._final(s, "", (), (), "cancelled"))
            await self._release_all(lane, streams)

    async def _release_all(self, lane: _Lane, streams: Sequence[GenerationStream]) -> None:
        """Release the streams' sequences on the lane's thread (when the step machinery failed,
        or at stop); never raises."""
        held = [s for s in streams if s.sequence is not None]
        model = lane.instance.model
        if not held or not isinstance(model, TextGenerator):
            return
        try:
            await lane.instance.run(self._release_many, model, held)
        except Exception:
            log.exception("model %r: releasing %d sequences failed", self.name, len(held))

    # -- requests (event loop) ----------------------------------------------------------------

    def validate(self, request: GenerationRequest) -> None:
        """Check the parameters; raise InvalidInputError naming the bad one and its range."""
        p = request.params
        if not 1 <= request.max_new_tokens <= self.max_new_tokens:
            raise InvalidInputError(
                f"max_new_tokens must be between 1 and {self.max_new_tokens} for model {self.name!r}, "
                f"got {request.max_new_tokens}"
            )
        if not math.isfinite(p.temperature) or p.temperature < 0:
            raise InvalidInputError(f"temperature must be >= 0 (0 is greedy), got {p.temperature}")
        if p.top_k < 0:
            raise InvalidInputError(f"top_k must be >= 0 (0 is off), got {p.top_k}")
        if not (0 < p.top_p <= 1):
            raise InvalidInputError(f"top_p must be in (0, 1] (1 is off), got {p.top_p}")
        if not math.isfinite(p.repetition_penalty) or p.repetition_penalty <= 0:
            raise InvalidInputError(f"repetition_penalty must be > 0 (1 is off), got {p.repetition_penalty}")
        if p.logprobs is not None and not 0 <= p.logprobs <= MAX_LOGPROBS:
            raise InvalidInputError(f"logprobs must be between 0 and {MAX_LOGPROBS}, got {p.logprobs}")
        if len(request.stop) > MAX_STOP_SEQUENCES:
            raise InvalidInputError(f"{len(request.stop)} stop sequences; at most {MAX_STOP_SEQUENCES} are allowed")
        for i, s in enumerate(request.stop):
            if not s or len(s) > MAX_STOP_LENGTH:
                raise InvalidInputError(f"stop sequence {i} must have 1 to {MAX_STOP_LENGTH} characters")

    def generate(self, request: GenerationRequest, deadline: float | None = None) -> GenerationStream:
        """Queue a request on the least loaded instance; iterate the stream for its chunks.
        Raises InvalidInputError for a bad parameter, QueueFullError when the queue is full.

        The prompt is tokenized and checked at once, on the tokenizing executor (not on the
        event loop, not on the instance's thread), before the request waits for a batch slot:
        a prompt the model cannot take (too long for the context window, or one ``tokenize``
        refuses) fails the first iteration with InvalidInputError as soon as it is tokenized,
        however busy the batch is."""
        self.validate(request)
        pool = self._tokenizer_pool
        if not self._lanes or self._stopping or pool is None:
            raise ModelNotReadyError(f"model {self.name!r} is not serving")
        if self.waiting + self.tokenizing >= self.config.max_queue_size:
            raise QueueFullError(f"model {self.name!r} has {self.config.max_queue_size} requests waiting; retry later")
        lane = min(self._lanes, key=lambda lane: lane.load)
        model = lane.instance.model
        assert isinstance(model, TextGenerator)
        stream = GenerationStream(self, request, deadline)
        stream.lane = lane
        lane.tokenizing.add(stream)
        future = asyncio.get_running_loop().run_in_executor(pool, self._tokenize, model, request.prompt)
        future.add_done_callback(functools.partial(self._tokenized, lane, stream))
        return stream

    def _tokenize(self, model: TextGenerator, prompt: str) -> list[int]:
        """On the tokenizing executor: the prompt's tokens, checked against the context window."""
        ids = list(model.tokenize(prompt))
        self._room(len(ids))
        return ids

    def _room(self, n: int) -> int:
        """The most tokens a prompt of ``n`` tokens leaves for the output; InvalidInputError
        (naming both lengths) when the prompt does not fit the context window."""
        if self.is_encoder_decoder:
            if n > self.context_length:
                raise InvalidInputError(
                    f"the prompt is {n} tokens, longer than the context window of model {self.name!r} "
                    f"({self.context_length} tokens)"
                )
            return self.context_length
        if n >= self.context_length:
            raise InvalidInputError(
                f"the prompt is {n} tokens; the context window of model {self.name!r} is "
                f"{self.context_length} tokens, prompt and output together"
            )
        return self.context_length - n

    def _tokenized(self, lane: _Lane, stream: GenerationStream, future: asyncio.Future[list[int]]) -> None:
        """On the event loop, once the prompt is tokenized: fail the stream, or queue it for a slot."""
        lane.tokenizing.discard(stream)
        if stream.done:  # stop() ended it meanwhile
            return
        if stream.cancelled:
            stream.done = True
            return
        if future.cancelled() or self._stopping:
            _put(stream, self._final(stream, "", (), (), "cancelled"))
            return
        error = future.exception()
        if error is not None:
            _put(stream, error if isinstance(error, ModelplexError) else inference_error(self.name, error))
            return
        ids = future.result()
        stream.prompt_ids = ids
        stream.prompt_tokens = len(ids)
        stream.limit = min(stream.request.max_new_tokens, self._room(len(ids)))
        lane.waiting.append(stream)
        lane.wake.set()

    # -- the decode loop ----------------------------------------------------------------------

    async def _drive(self, lane: _Lane) -> None:
        model = lane.instance.model
        assert isinstance(model, TextGenerator)
        while not self._stopping:
            if not lane.running and not lane.waiting:  # (tokenizing streams wake it when they queue)
                lane.wake.clear()
                await lane.wake.wait()
                continue
            if not await self._step_lane(lane, model):
                # Every running stream is paused and nothing else is to do: wait for a client to
                # read (or cancel), a new request, or the earliest deadline.
                lane.wake.clear()
                deadlines = [s.deadline for s in (*lane.running, *lane.waiting) if s.deadline is not None]
                timeout = max(0.0, min(deadlines) - asyncio.get_running_loop().time()) if deadlines else None
                try:
                    await asyncio.wait_for(lane.wake.wait(), timeout)
                except TimeoutError:
                    pass

    async def _step_lane(self, lane: _Lane, model: TextGenerator) -> bool:
        """One step of the lane; False when there was nothing to do. Its own frame, so that no
        reference to the step's streams outlives it while the lane is idle."""
        now = asyncio.get_running_loop().time()
        leaving = [s for s in lane.running if s.cancelled or _expired(s, now)]
        for s in leaving:
            lane.running.remove(s)
            if not s.cancelled:
                _put(s, DeadlineExceededError("the deadline passed during generation"))
            s.done = True
        # Waiting streams that were cancelled or expired leave the queue now, not when a slot frees.
        if any(s.cancelled or _expired(s, now) for s in lane.waiting):
            for s in lane.waiting:
                if s.cancelled:
                    s.done = True
                elif _expired(s, now):
                    _put(s, DeadlineExceededError("the deadline passed before generation started"))
            lane.waiting = collections.deque(s for s in lane.waiting if not s.done)
        joining = lane.joining = []
        while lane.waiting and len(lane.running) + len(joining) < self._batch:
            joining.append(lane.waiting.popleft())
        running = [s for s in lane.running if not s.paused]
        if not running and not joining and not leaving:
            return False
        try:
            events = await lane.instance.run(self._step, model, joining, running, leaving)
        except Exception as e:  # the step machinery itself failed: fail its streams, free their caches
            err = inference_error(self.name, e)
            events = [(s, err) for s in (*running, *joining)]
            await self._release_all(lane, (*running, *joining, *leaving))
        for s, item in events:
            _put(s, item)
        lane.running = [s for s in (*lane.running, *joining) if not s.done]
        lane.joining = []
        return True

    def _step(
        self,
        model: TextGenerator,
        joining: Sequence[GenerationStream],
        running: Sequence[GenerationStream],
        leaving: Sequence[GenerationStream],
    ) -> list[_Event]:
        """On the instance's thread: free the leavers, admit the joiners, decode one step."""
        events: list[_Event] = []
        for s in leaving:
            self._release(model, s)
        batch = list(running)
        for s in joining:
            try:
                self._admit(model, s)
            except Exception as e:
                s.done = True
                events.append((s, e if isinstance(e, ModelplexError) else inference_error(self.name, e)))
                continue
            batch.append(s)
        if not batch:
            return events
        try:
            tokens = model.step([s.sequence for s in batch])
            if len(tokens) != len(batch):
                raise RuntimeError(f"step returned {len(tokens)} tokens for {len(batch)} sequences")
        except Exception as e:
            err = e if isinstance(e, ModelplexError) else inference_error(self.name, e)
            for s in batch:
                s.done = True
                self._release(model, s)
                events.append((s, err))
            return events
        now = time.perf_counter()
        for s, token in zip(batch, tokens, strict=True):
            chunk_or_err: GenerationChunk | BaseException
            if isinstance(token, BaseException):  # this sequence alone failed
                s.done = True
                chunk_or_err = token if isinstance(token, ModelplexError) else inference_error(self.name, token)
            else:
                try:
                    chunk_or_err = self._chunk(model, s, token, now)
                except Exception as e:
                    s.done = True
                    chunk_or_err = inference_error(self.name, e)
            events.append((s, chunk_or_err))
            if s.done:
                self._release(model, s)
        return events

    def _admit(self, model: TextGenerator, s: GenerationStream) -> None:
        """Start the sequence from the tokens computed (and checked) at submission."""
        ids, s.prompt_ids = s.prompt_ids, None
        assert ids is not None, "a stream joins only once its prompt is tokenized"
        s.detok = IncrementalDetokenizer(model.detokenize)
        s.sequence = model.start(ids, s.request.params)

    def _release_many(self, model: TextGenerator, streams: Sequence[GenerationStream]) -> None:
        for s in streams:
            self._release(model, s)

    def _release(self, model: TextGenerator, s: GenerationStream) -> None:
        seq, s.sequence = s.sequence, None
        if seq is None:
            return
        try:
            model.release(seq)
        except Exception:
            log.exception("model %r failed to release a sequence", self.name)

    def _chunk(self, model: TextGenerator, s: GenerationStream, token: NextToken, now: float) -> GenerationChunk:
        assert s.detok is not None
        s.generated += 1
        if s.generated == 1:
            s.first_token_s = now - s.arrived
        logprobs = _logprobs(model, token, s.request.params)
        eos = model.is_eos(token.token_id)
        text = s.stops.feed("" if eos else s.detok.add(token.token_id))
        if s.stops.matched is not None:
            return self._final(s, text, (token.token_id,), logprobs, "stop")
        if eos or s.generated >= s.limit:
            text += s.stops.feed(s.detok.flush())
            reason = "stop" if s.stops.matched is not None else ("eos" if eos else "length")
            if s.stops.matched is None:
                text += s.stops.flush()
            return self._final(s, text, (token.token_id,), logprobs, reason)
        return GenerationChunk(text, (token.token_id,), logprobs)

    def _final(
        self,
        s: GenerationStream,
        text: str,
        token_ids: tuple[int, ...],
        logprobs: tuple[TokenLogprobs, ...],
        reason: str,
    ) -> GenerationChunk:
        s.done = True
        return GenerationChunk(
            text,
            token_ids,
            logprobs,
            finish_reason=reason,
            prompt_tokens=s.prompt_tokens,
            completion_tokens=s.generated,
            time_to_first_token_s=s.first_token_s,
            stop_sequence=s.stops.matched or "",
        )


def _expired(s: GenerationStream, now: float) -> bool:
    return s.deadline is not None and now >= s.deadline


def _put(s: GenerationStream, item: GenerationChunk | BaseException) -> None:
    if isinstance(item, BaseException):
        s.done = True
    if not s.cancelled:
        s.queue.put_nowait(item)


def _logprobs(model: TextGenerator, token: NextToken, params: SamplingParams) -> tuple[TokenLogprobs, ...]:
    if params.logprobs is None or token.logprob is None:
        return ()
    top = tuple((t.token_id, model.detokenize([t.token_id]), t.logprob) for t in token.top[: params.logprobs])
    return (TokenLogprobs(token.token_id, model.detokenize([token.token_id]), token.logprob, top),)

"""Text generation with continuous batching over a model's instances.

Built on the shared step scheduler (:mod:`modelplex.server.runtimes.steps`): each
instance has a lane of streams, and one decode step advances all of its running
streams together; requests join and leave between steps. The thread side of a step
is :class:`~modelplex.tasks.text_generation.decode.Decoder`.

A request is tokenized when it is submitted, before it waits for a batch slot: on
the runtime's small tokenizing executor (``TOKENIZE_THREADS`` threads, never the
instance's thread, never the event loop), which also checks the prompt against the
context window. So a prompt the model cannot take fails at once, even while every
slot is busy, and the tokens it computed are the ones the sequence starts from.

Backpressure: a stream whose client lets ``max_pending`` chunks pile up unread sits
the next steps out (it keeps its slot and its cache) until the client reads again.

Unloading (``stop``) lets the step in flight finish, then ends every stream it knows:
those that finished in that step keep their finish reason, the others (running, joining,
waiting, being tokenized) end with ``"cancelled"``; a later ``generate`` raises
ModelNotReadyError.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from modelplex.errors import InvalidInputError, ModelNotReadyError, ModelplexError, QueueFullError
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import TaskRuntime, inference_error
from modelplex.server.runtimes.steps import StepScheduler
from modelplex.tasks.text_generation.decode import (
    Decoder,
    GenerationChunk,
    GenerationRequest,
    GenerationStream,
    TokenLogprobs,
)
from modelplex.tasks.text_generation.interface import TextGenerator
from modelplex.tasks.text_generation.settings import TextGenerationSettings
from modelplex_client.pb import text_generation_pb2 as pb

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
CHARS_PER_TOKEN = 32
"""Characters per token of the context window a prompt may have, unless max_prompt_chars says."""
TOKENIZE_THREADS = 2
"""Threads of a model's tokenizing executor, which tokenizes and checks prompts at submission."""


class TextGenerationRuntime(TaskRuntime[TextGenerationSettings]):
    """Validates requests, spreads them over the instances' lanes; the scheduler decodes."""

    output_unit = "tokens"

    def __init__(self, name: str, instances: Sequence[Instance], settings: TextGenerationSettings) -> None:
        super().__init__(name, instances, settings)
        first = self.first_model()
        assert isinstance(first, TextGenerator), f"{type(first).__name__} is not a TextGenerator"
        self.context_length = int(first.context_length)
        self.is_encoder_decoder = bool(first.is_encoder_decoder)
        self.max_new_tokens = settings.max_new_tokens
        self.max_prompt_chars = settings.max_prompt_chars or self.context_length * CHARS_PER_TOKEN
        decoder = Decoder(name, self.stats)
        self.scheduler: StepScheduler[GenerationStream] = StepScheduler(
            name,
            instances,
            settings.max_batch_size,
            step=decoder.step,
            release=decoder.release,
            cancelled=GenerationStream.cancelled_chunk,
        )
        self._tokenizer_pool: ThreadPoolExecutor | None = None

    def info(self) -> pb.TextGenerationInfo:
        return pb.TextGenerationInfo(
            context_length=self.context_length,
            max_new_tokens=self.max_new_tokens,
            is_encoder_decoder=self.is_encoder_decoder,
        )

    @property
    def running(self) -> int:
        """Sequences in a batch now, over all instances."""
        return self.scheduler.running

    @property
    def waiting(self) -> int:
        """Sequences waiting for a batch slot, over all instances."""
        return self.scheduler.waiting

    @property
    def tokenizing(self) -> int:
        """Requests submitted whose prompts are being tokenized, over all instances."""
        return self.scheduler.preparing

    def active(self) -> int:
        return self.running + self.waiting + self.tokenizing

    def start(self) -> None:
        self._tokenizer_pool = ThreadPoolExecutor(
            TOKENIZE_THREADS, thread_name_prefix=f"modelplex-{self.name}-tokenize"
        )
        self.scheduler.start()

    async def stop(self) -> None:
        """End every stream (see the module doc) and stop tokenizing."""
        pool, self._tokenizer_pool = self._tokenizer_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        await self.scheduler.stop()

    # -- requests (event loop) ----------------------------------------------------------------

    def validate(self, request: GenerationRequest) -> None:
        """Check the parameters; raise InvalidInputError naming the bad one and its range."""
        p = request.params
        if len(request.prompt) > self.max_prompt_chars:
            raise InvalidInputError(
                f"the prompt has {len(request.prompt):,} characters; model {self.name!r} takes at most "
                f"{self.max_prompt_chars:,} (max_prompt_chars), before it is even tokenized"
            )
        if not 0 <= request.max_new_tokens <= self.max_new_tokens:
            raise InvalidInputError(
                f"max_new_tokens must be between 1 and {self.max_new_tokens} for model {self.name!r} "
                f"(0 means {self.max_new_tokens}), got {request.max_new_tokens}"
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
        if pool is None or self.scheduler.stopping:
            raise ModelNotReadyError(f"model {self.name!r} is not serving")
        if self.waiting + self.tokenizing >= self.settings.max_queue_size:
            raise QueueFullError(
                f"model {self.name!r} has {self.settings.max_queue_size} requests waiting; retry later"
            )
        stream = GenerationStream(request, deadline)
        lane = self.scheduler.assign(stream)
        model = lane.instance.model
        assert isinstance(model, TextGenerator)
        future = asyncio.get_running_loop().run_in_executor(pool, self._tokenize, model, request.prompt)
        future.add_done_callback(functools.partial(self._tokenized, stream))
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

    def _tokenized(self, stream: GenerationStream, future: asyncio.Future[list[int]]) -> None:
        """On the event loop, once the prompt is tokenized: fail the stream, or queue it for a slot."""
        if stream.done or stream.cancelled:  # stop() ended it meanwhile, or its client left
            self.scheduler.abandon(stream)
            stream.done = True
            return
        if future.cancelled():
            self.scheduler.abandon(stream)
            stream.put(stream.cancelled_chunk(), final=True)
            return
        error = future.exception()
        if error is not None:
            self.scheduler.abandon(stream)
            stream.put(error if isinstance(error, ModelplexError) else inference_error(self.name, error))
            return
        ids = future.result()
        stream.prompt_ids = ids
        stream.prompt_tokens = len(ids)
        wanted = stream.request.max_new_tokens or self.max_new_tokens  # 0: the model's limit
        stream.limit = min(wanted, self._room(len(ids)))
        if not self.scheduler.enqueue(stream) and not stream.done:
            stream.put(stream.cancelled_chunk(), final=True)

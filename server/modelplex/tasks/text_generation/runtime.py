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
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

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
from modelplex.tasks.text_generation.interface import ChatMessage, TextGenerator
from modelplex.tasks.text_generation.limits import CHARS_PER_TOKEN, MAX_LOGPROBS, MAX_STOP_SEQUENCES, Limits
from modelplex.tasks.text_generation.settings import TextGenerationSettings
from modelplex_client.pb import text_generation_pb2 as pb

log = logging.getLogger(__name__)

__all__ = [
    "MAX_LOGPROBS",
    "MAX_STOP_SEQUENCES",
    "TOKENIZE_THREADS",
    "ChoiceStreams",
    "GenerationChunk",
    "GenerationRequest",
    "GenerationStream",
    "TextGenerationRuntime",
    "TokenLogprobs",
]

T = TypeVar("T")

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
        self.limits = Limits(name, self.max_new_tokens, self.max_prompt_chars, int(getattr(first, "vocab_size", 0)))
        decoder = Decoder(name, self.stats)
        self.scheduler: StepScheduler[GenerationStream] = StepScheduler(
            name,
            instances,
            settings.max_batch_size,
            step=decoder.step,
            release=decoder.release,
            cancelled=GenerationStream.cancelled_chunk,
            prepare_threads=TOKENIZE_THREADS,
            early_events=True,
        )

    def info(self) -> pb.TextGenerationInfo:
        model = self.first_model()
        info = pb.TextGenerationInfo(
            context_length=self.context_length,
            max_new_tokens=self.max_new_tokens,
            is_encoder_decoder=self.is_encoder_decoder,
            eos_token_ids=list(getattr(model, "eos_token_ids", ())),
            has_chat_template=bool(getattr(model, "has_chat_template", False)),
            vocab_size=self.limits.vocab_size,
        )
        bos = getattr(model, "bos_token_id", None)
        if bos is not None:
            info.bos_token_id = bos
        return info

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
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop tokenizing and end every stream (see the module doc)."""
        await self.scheduler.stop()

    # -- requests (event loop) ----------------------------------------------------------------

    def validate(self, request: GenerationRequest) -> None:
        """Check the parameters; raise InvalidInputError naming the bad one and its range."""
        self.limits.validate(request)

    def generate(self, request: GenerationRequest, deadline: float | None = None) -> GenerationStream | ChoiceStreams:
        """Queue a request on the least loaded instance; iterate the stream for its chunks
        (with ``n`` > 1, the chunks of its ``n`` choices, each with its ``index``, as they come).
        Raises InvalidInputError for a bad parameter, QueueFullError when the queue is full.

        The prompt is tokenized (or a chat rendered and tokenized) and checked at once, on the
        tokenizing executor (not on the event loop, not on the instance's thread), before the
        request waits for a batch slot: a prompt the model cannot take (too long for the context
        window, or one ``tokenize`` refuses) fails the first iteration with InvalidInputError as
        soon as it is tokenized, however busy the batch is. The ``n`` choices share it."""
        self.validate(request)
        if self.scheduler.stopping:
            raise ModelNotReadyError(f"model {self.name!r} is not serving")
        if self.waiting + self.tokenizing + request.n > self.settings.max_queue_size:
            raise QueueFullError(
                f"model {self.name!r} has {self.settings.max_queue_size} requests waiting; retry later"
            )
        streams = [GenerationStream(_choice(request, i), deadline, i) for i in range(request.n)]
        lanes = [self.scheduler.assign(s) for s in streams]
        model = lanes[0].instance.model
        assert isinstance(model, TextGenerator)
        future = self.scheduler.off_loop(self._prompt_ids, model, request)
        future.add_done_callback(functools.partial(self._tokenized, streams))
        return streams[0] if request.n == 1 else ChoiceStreams(streams)

    def _prompt_ids(self, model: TextGenerator, request: GenerationRequest) -> list[int]:
        """On the tokenizing executor: the prompt's tokens, checked against the context window."""
        if request.messages:
            text = model.render_chat(request.messages, add_generation_prompt=request.add_generation_prompt)
            ids = list(model.tokenize(text, add_special_tokens=False))  # the template has them
        elif request.prompt_token_ids:
            ids = list(request.prompt_token_ids)
        elif request.add_special_tokens:
            ids = list(model.tokenize(request.prompt))
        else:
            ids = list(model.tokenize(request.prompt, add_special_tokens=False))
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

    def _tokenized(self, streams: list[GenerationStream], future: asyncio.Future[list[int]]) -> None:
        """On the event loop, once the prompt is tokenized: fail the streams, or queue them for slots."""
        for stream in streams:
            if stream.done or stream.cancelled:  # stop() ended it meanwhile, or its client left
                self.scheduler.abandon(stream)
                stream.done = True
                continue
            if future.cancelled():
                self.scheduler.abandon(stream)
                stream.put(stream.cancelled_chunk(), final=True)
                continue
            error = future.exception()
            if error is not None:
                self.scheduler.abandon(stream)
                stream.put(error if isinstance(error, ModelplexError) else inference_error(self.name, error))
                continue
            ids = future.result()
            stream.prompt_ids = ids
            stream.prompt_tokens = len(ids)
            wanted = stream.request.max_new_tokens or self.max_new_tokens  # 0: the model's limit
            stream.limit = min(wanted, self._room(len(ids)))
            if not self.scheduler.enqueue(stream) and not stream.done:
                stream.put(stream.cancelled_chunk(), final=True)

    # -- tokens (event loop) ---------------------------------------------------------------------

    async def tokenize(
        self,
        text: str,
        *,
        add_special_tokens: bool = True,
        messages: Sequence[ChatMessage] = (),
        add_generation_prompt: bool = True,
    ) -> tuple[list[int], list[str]]:
        """The token ids of a text (or of a conversation rendered by the chat template) and each
        token's text, special tokens included, on the tokenizing executor."""
        self.limits.validate(GenerationRequest(text, 0, messages=tuple(messages)))
        request = GenerationRequest(
            text,
            0,
            add_special_tokens=add_special_tokens,
            messages=tuple(messages),
            add_generation_prompt=add_generation_prompt,
        )
        model = self.first_model()
        assert isinstance(model, TextGenerator)

        def run() -> tuple[list[int], list[str]]:
            if request.messages:
                prompt = model.render_chat(request.messages, add_generation_prompt=add_generation_prompt)
                ids = list(model.tokenize(prompt, add_special_tokens=False))
            elif add_special_tokens:
                ids = list(model.tokenize(text))
            else:
                ids = list(model.tokenize(text, add_special_tokens=False))
            return ids, [model.detokenize([t], skip_special_tokens=False) for t in ids]

        return await self._off_loop(run)

    async def detokenize(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """The text of ``token_ids``, on the tokenizing executor."""
        if len(token_ids) > self.max_prompt_chars:
            raise InvalidInputError(f"{len(token_ids):,} token ids: more than model {self.name!r} takes")
        self.limits.token_ids("token_ids", list(token_ids))
        model = self.first_model()
        assert isinstance(model, TextGenerator)
        ids = list(token_ids)
        if skip_special_tokens:
            return await self._off_loop(lambda: model.detokenize(ids))
        return await self._off_loop(lambda: model.detokenize(ids, skip_special_tokens=False))

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        try:
            return await self.scheduler.off_loop(fn)
        except ModelplexError:
            raise
        except Exception as e:
            raise inference_error(self.name, e) from e


def _choice(request: GenerationRequest, index: int) -> GenerationRequest:
    """Choice ``index``'s request: the same, with the next seeds (so a seeded request repeats)."""
    seed = request.params.seed
    if index == 0 or seed is None:
        return request
    return dataclasses.replace(request, params=dataclasses.replace(request.params, seed=(seed + index) % 2**64))


class ChoiceStreams:
    """The ``n`` streams of one request, as one async iterator of their chunks (each with its
    ``index``), in the order they come; it ends when every choice has ended. ``cancel()``
    cancels them all; an error in one ends the iteration (and cancels the others)."""

    def __init__(self, streams: Sequence[GenerationStream]) -> None:
        self.streams = list(streams)

    def cancel(self) -> None:
        for s in self.streams:
            s.cancel()

    def __aiter__(self) -> AsyncIterator[GenerationChunk]:
        return self._merged()

    async def _merged(self) -> AsyncIterator[GenerationChunk]:
        # Bounded, so that a slow reader leaves chunks in the streams, which then pause.
        queue: asyncio.Queue[GenerationChunk | BaseException | None] = asyncio.Queue(maxsize=len(self.streams))

        async def pump(stream: GenerationStream) -> None:
            try:
                async for chunk in stream:
                    await queue.put(chunk)
            except Exception as e:
                await queue.put(e)
            await queue.put(None)

        tasks = [asyncio.create_task(pump(s)) for s in self.streams]
        try:
            left = len(tasks)
            while left:
                item = await queue.get()
                if item is None:
                    left -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.cancel()
            for t in tasks:
                t.cancel()

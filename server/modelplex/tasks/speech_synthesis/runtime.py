"""Streaming speech synthesis on the shared step scheduler.

Each instance has a lane of calls (:mod:`modelplex.server.runtimes.steps`); one step
advances the current sentence of every running call together, so sentences of
concurrent calls share the model's forward passes. The thread side of a step is
:class:`~modelplex.tasks.speech_synthesis.synth.Synthesizer`.

A request is checked on the event loop (text length, encoding, rate, speaking rate),
then split into sentences and prepared (normalised and encoded by the model) on the
runtime's small preparing executor (``PREPARE_THREADS`` threads, never the instance's
thread, never the event loop), before it waits for a slot: a text with nothing the
model can voice fails at once, however busy the model is. The stream's first message,
the audio format, is put once the text is prepared.

Backpressure: a call whose client lets ``max_pending`` messages pile up unread sits the
next steps out (it keeps its sentence's state) until the client reads again.

Unloading (``stop``) lets the step in flight finish, then ends every call it knows with
UNAVAILABLE (calls that finished in that step keep their summary).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Sequence

from modelplex.errors import InvalidInputError, ModelNotReadyError, ModelplexError, QueueFullError
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import TaskRuntime, inference_error
from modelplex.server.runtimes.steps import StepScheduler
from modelplex.tasks.speech_synthesis.audio import ENCODINGS
from modelplex.tasks.speech_synthesis.interface import SpeechSynthesizer
from modelplex.tasks.speech_synthesis.settings import SpeechSynthesisSettings
from modelplex.tasks.speech_synthesis.synth import (
    AudioFormat,
    Render,
    Sentence,
    SynthesisRequest,
    SynthesisStream,
    Synthesizer,
)
from modelplex.tasks.speech_synthesis.text import split_text
from modelplex_client.pb import speech_synthesis_pb2 as pb

log = logging.getLogger(__name__)

__all__ = ["MAX_SAMPLE_RATE", "MIN_SAMPLE_RATE", "PREPARE_THREADS", "SpeechSynthesisRuntime", "prepare_text"]

PREPARE_THREADS = 2
"""Threads of a model's preparing executor (sentence splitting and ``prepare``)."""
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 192_000
MIN_SPEAKING_RATE = 0.25
MAX_SPEAKING_RATE = 4.0


def prepare_text(model: SpeechSynthesizer, name: str, text: str, max_sentence_chars: int) -> list[Sentence]:
    """Split ``text`` into sentences and prepare each with the model; InvalidInputError when
    nothing in it can be voiced (naming what was dropped)."""
    sentences = [
        Sentence(i, seg, model.prepare(seg.text)) for i, seg in enumerate(split_text(text, max_sentence_chars))
    ]
    if not any(s.prepared.tokens for s in sentences):
        dropped = "".join(dict.fromkeys("".join(s.prepared.dropped for s in sentences)))
        what = f": every character was dropped ({dropped!r})" if dropped else ""
        raise InvalidInputError(f"the text has nothing model {name!r} can voice{what}")
    return sentences


class SpeechSynthesisRuntime(TaskRuntime[SpeechSynthesisSettings]):
    """Validates requests, prepares their text, spreads them over the instances' lanes."""

    def __init__(self, name: str, instances: Sequence[Instance], settings: SpeechSynthesisSettings) -> None:
        super().__init__(name, instances, settings)
        first = self.first_model()
        assert isinstance(first, SpeechSynthesizer), f"{type(first).__name__} is not a SpeechSynthesizer"
        self.sample_rate = int(first.sample_rate)
        self.supports_speaking_rate = bool(first.supports_speaking_rate)
        self.description = str(first.description)
        synthesizer = Synthesizer(name)
        self.scheduler: StepScheduler[SynthesisStream] = StepScheduler(
            name,
            instances,
            settings.max_batch_size,
            step=synthesizer.step,
            release=synthesizer.release,
            cancelled=SynthesisStream.unloaded,
            prepare_threads=PREPARE_THREADS,
        )

    def info(self) -> pb.SpeechSynthesisInfo:
        return pb.SpeechSynthesisInfo(
            sample_rate_hz=self.sample_rate,
            max_text_chars=self.settings.max_text_chars,
            supports_speaking_rate=self.supports_speaking_rate,
            max_sentence_chars=self.settings.max_sentence_chars,
            description=self.description,
        )

    @property
    def running(self) -> int:
        """Calls whose sentences are being synthesized now, over all instances."""
        return self.scheduler.running

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot, over all instances."""
        return self.scheduler.waiting

    def active(self) -> int:
        return self.scheduler.running + self.scheduler.waiting + self.scheduler.preparing

    def start(self) -> None:
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop preparing and end every call (see the module doc)."""
        await self.scheduler.stop()

    # -- requests (event loop) ----------------------------------------------------------------

    def validate(self, request: SynthesisRequest) -> int:
        """Check what needs no model; return the output sample rate. InvalidInputError names
        the bad field and what is accepted."""
        if not request.text.strip():
            raise InvalidInputError("text is empty: send the text to speak")
        limit = self.settings.max_text_chars
        if len(request.text) > limit:
            raise InvalidInputError(
                f"text has {len(request.text)} characters; model {self.name!r} takes at most {limit} per request"
            )
        if request.encoding not in ENCODINGS:
            raise InvalidInputError(f"encoding {request.encoding!r} is not one of LINEAR16, FLOAT32")
        rate = self.sample_rate if request.sample_rate is None else request.sample_rate
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise InvalidInputError(
                f"sample_rate_hz must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} "
                f"(unset for the model's own {self.sample_rate} Hz), got {rate}"
            )
        speed = request.options.speaking_rate
        if speed != 1.0:
            if not self.supports_speaking_rate:
                raise InvalidInputError(
                    f"model {self.name!r} does not support speaking_rate (it has no control over durations); "
                    "leave it unset"
                )
            if not (math.isfinite(speed) and MIN_SPEAKING_RATE <= speed <= MAX_SPEAKING_RATE):
                raise InvalidInputError(
                    f"speaking_rate must be between {MIN_SPEAKING_RATE} and {MAX_SPEAKING_RATE}, got {speed}"
                )
        return rate

    def synthesize(self, request: SynthesisRequest, deadline: float | None = None) -> SynthesisStream:
        """Queue a request on the least loaded instance; iterate the stream for its messages.
        Raises InvalidInputError for a bad parameter and QueueFullError when the queue is full;
        a text with nothing to voice fails the first iteration with InvalidInputError."""
        rate = self.validate(request)
        if self.scheduler.stopping:
            raise ModelNotReadyError(f"model {self.name!r} is not serving")
        if self.scheduler.waiting + self.scheduler.preparing >= self.settings.max_queue_size:
            raise QueueFullError(f"model {self.name!r} has {self.settings.max_queue_size} calls waiting; retry later")
        stream = SynthesisStream(request, rate, deadline)
        lane = self.scheduler.assign(stream)
        model = lane.instance.model
        assert isinstance(model, SpeechSynthesizer)
        future = self.scheduler.off_loop(prepare_text, model, self.name, request.text, self.settings.max_sentence_chars)
        future.add_done_callback(functools.partial(self._prepared, stream))
        return stream

    def _prepared(self, stream: SynthesisStream, future: asyncio.Future[list[Sentence]]) -> None:
        """On the event loop, once the text is prepared: fail the call, or queue it for a slot."""
        if stream.done or stream.cancelled:  # stop() ended it meanwhile, or its client left
            self.scheduler.abandon(stream)
            stream.done = True
            return
        if future.cancelled():
            self.scheduler.abandon(stream)
            stream.put(stream.unloaded())
            return
        error = future.exception()
        if error is not None:
            self.scheduler.abandon(stream)
            stream.put(error if isinstance(error, ModelplexError) else inference_error(self.name, error))
            return
        request = stream.request
        stream.render = Render(
            future.result(), self.sample_rate, stream.rate, request.encoding, self.settings.sentence_pause_ms
        )
        stream.put((AudioFormat(request.encoding, stream.rate, self.sample_rate),))
        if not self.scheduler.enqueue(stream) and not stream.done:
            stream.put(stream.unloaded())

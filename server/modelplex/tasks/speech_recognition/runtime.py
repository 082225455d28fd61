"""Speech recognition on the shared step scheduler: one session per stream or clip.

Each instance has a lane of sessions (:mod:`modelplex.server.runtimes.steps`); a step
advances every session of the lane that has new audio, together, on the instance's thread
(:class:`~modelplex.tasks.speech_recognition.steps.Stepper`). A session with no new audio
sits steps out, so an idle live stream costs nothing but its slot. Audio chunks are checked
and decoded on the event loop as they arrive (cheap numpy work); resampling, voice activity
and the model run on the instance's thread.

Unloading (``stop``) lets the step in flight finish, then ends every open stream with
UNAVAILABLE; a later call raises ModelNotReadyError.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from modelplex.errors import InvalidInputError, ModelLoadError, ModelNotReadyError, QueueFullError
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import TaskRuntime
from modelplex.server.runtimes.steps import StepScheduler
from modelplex.tasks.speech_recognition.audio import FILE, AudioFormat, decode_file, decode_samples
from modelplex.tasks.speech_recognition.beam import BeamDecoder, BeamOptions
from modelplex.tasks.speech_recognition.interface import CTCRecognizer, SpeechRecognizer
from modelplex.tasks.speech_recognition.segmenter import SegmentPolicy
from modelplex.tasks.speech_recognition.session import (
    AudioTooLongError,
    RecognitionResult,
    RecognitionStream,
    StreamOptions,
)
from modelplex.tasks.speech_recognition.settings import SpeechRecognitionSettings
from modelplex.tasks.speech_recognition.steps import Plan, Stepper
from modelplex.tasks.speech_recognition.vad import make_vad, silero_available
from modelplex_client.pb import speech_recognition_pb2 as pb

log = logging.getLogger(__name__)

__all__ = ["SpeechRecognitionRuntime"]


class SpeechRecognitionRuntime(TaskRuntime[SpeechRecognitionSettings]):
    """Opens streams on the least loaded instance; the scheduler steps them."""

    def __init__(self, name: str, instances: Sequence[Instance], settings: SpeechRecognitionSettings) -> None:
        super().__init__(name, instances, settings)
        first = self.first_model()
        assert isinstance(first, SpeechRecognizer), f"{type(first).__name__} is not a SpeechRecognizer"
        self.sample_rate = int(first.sample_rate)
        self.streaming = bool(first.streaming)
        self.languages = tuple(first.languages)
        self.labels = tuple(first.labels) if isinstance(first, CTCRecognizer) else ()
        self.vad = settings.vad
        if self.vad == "auto":
            self.vad = "silero" if silero_available() and self.sample_rate in (8000, 16000) else "energy"
        self.plan = self._plan(first, settings)
        self.beam = self._beam(first, settings)
        stepper = Stepper(name, self.plan, lambda: make_vad(self.vad, self.sample_rate), beam=self.beam)
        self.scheduler: StepScheduler[RecognitionStream] = StepScheduler(
            name,
            instances,
            settings.max_batch_size,
            step=stepper.step,
            release=stepper.release,
            cancelled=lambda s: ModelNotReadyError(f"model {name!r} was unloaded while the stream was open"),
        )

    def _plan(self, model: SpeechRecognizer, s: SpeechRecognitionSettings) -> Plan:
        rate = self.sample_rate
        spf = int(model.samples_per_frame) if isinstance(model, CTCRecognizer) else 1

        def frames(ms: float) -> int:
            return round(ms / 1000 * rate / spf)

        policy = SegmentPolicy(
            min_silence=round(s.min_silence_ms / 1000 * rate),
            pad=round(s.speech_pad_ms / 1000 * rate),
            max_length=round(s.max_segment_s * rate),
            align=spf,
        )
        if not self.streaming:
            return Plan(rate, False, policy, interim_interval=round(s.interim_interval_ms / 1000 * rate))
        # Two frames of look-ahead at least: a window's last frames need audio past its end.
        return Plan(
            rate,
            True,
            policy,
            window=max(1, frames(s.window_ms)),
            left=frames(s.left_context_ms),
            lookahead=max(2, frames(s.lookahead_ms)),
            samples_per_frame=spf,
        )

    def _beam(self, model: SpeechRecognizer, s: SpeechRecognitionSettings) -> BeamDecoder | None:
        """The beam decoder of the finals, built (files read, LM loaded) at load."""
        if s.decoder != "beam":
            return None
        if not isinstance(model, CTCRecognizer):
            raise ModelLoadError(
                f'model {self.name!r}: decoder = "beam" applies to CTC models; {type(model).__name__} decodes '
                "whole segments itself"
            )
        options = BeamOptions(s.lexicon, s.lm, s.beam_size, s.beam_threshold, s.lm_weight, s.word_score)
        frame_s = model.samples_per_frame / model.sample_rate
        try:
            return BeamDecoder(model.labels, model.blank, model.word_delimiter, model.ignored_labels, frame_s, options)
        except ModelLoadError as e:
            raise ModelLoadError(f"model {self.name!r}: {e}") from None

    def info(self) -> pb.SpeechRecognitionInfo:
        p, s = self.plan, self.settings
        frame_ms = p.samples_per_frame / p.sample_rate * 1000
        return pb.SpeechRecognitionInfo(
            sample_rate_hz=self.sample_rate,
            streaming=self.streaming,
            languages=self.languages,
            window_ms=p.window * frame_ms,
            left_context_ms=p.left * frame_ms,
            lookahead_ms=p.lookahead * frame_ms,
            interim_interval_ms=0.0 if self.streaming else s.interim_interval_ms,
            max_segment_ms=s.max_segment_s * 1000,
            max_audio_ms=s.max_audio_s * 1000,
            vad=self.vad,
            labels=self.labels,
            decoder=s.decoder if self.streaming else "",
        )

    def active(self) -> int:
        s = self.scheduler
        return s.running + s.waiting + s.preparing

    def start(self) -> None:
        self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        if self.beam is not None:
            self.beam.close()

    # -- calls (event loop) ---------------------------------------------------------------

    def language(self, wanted: str) -> str:
        """The model's language for a request's ``wanted`` ("" is the first; "en-US" finds "en")."""
        if not self.languages:
            if wanted:
                raise InvalidInputError(f"model {self.name!r} names no languages: leave language empty")
            return ""
        if not wanted:
            return self.languages[0]
        for lang in self.languages:
            if wanted.lower() == lang.lower() or wanted.lower().split("-")[0] == lang.lower():
                return lang
        raise InvalidInputError(
            f"model {self.name!r} does not know language {wanted!r}; it knows {', '.join(self.languages)}"
        )

    def open_stream(self, options: StreamOptions, deadline: float | None = None) -> RecognitionStream:
        """A new session, queued for a slot on the least loaded instance; push its audio, then
        ``finish()``; iterate it for its updates. QueueFullError when the queue is full."""
        if self.scheduler.stopping:
            raise ModelNotReadyError(f"model {self.name!r} is not serving")
        if self.scheduler.waiting + self.scheduler.preparing >= self.settings.max_queue_size:
            raise QueueFullError(f"model {self.name!r} has {self.settings.max_queue_size} streams waiting; retry later")
        stream = RecognitionStream(options, deadline)
        self.scheduler.assign(stream)
        self.scheduler.enqueue(stream)
        return stream

    def push(self, stream: RecognitionStream, data: bytes) -> None:
        """One audio message of a stream: checked and decoded here; a bad one fails the stream."""
        if stream.done or stream.cancelled or not data:
            return
        try:
            if len(data) > self.settings.max_chunk_bytes:
                raise QueueFullError(
                    f"an audio message of {len(data)} bytes is larger than this model takes "
                    f"({self.settings.max_chunk_bytes}); send smaller chunks"
                )
            samples = decode_samples(data, stream.options.format)
            self._check_length(stream.received + len(samples), stream.options.format.sample_rate)
        except Exception as e:
            stream.fail(e)
            return
        stream.push(samples)

    def finish(self, stream: RecognitionStream) -> None:
        """The client's audio ended."""
        if stream.received == 0:
            stream.fail(InvalidInputError("the stream ended without audio: send audio_content after the config"))
            return
        stream.finish()

    def _check_length(self, samples: int, rate: int) -> None:
        if samples > self.settings.max_audio_s * rate:
            raise AudioTooLongError(
                f"the audio is longer than model {self.name!r} takes ({self.settings.max_audio_s:g} s)"
            )

    async def recognize(
        self, options: StreamOptions, data: bytes, deadline: float | None = None
    ) -> tuple[list[RecognitionResult], float]:
        """A whole clip: its final results (one per segment with speech) and its length in
        seconds. The same processing as a stream of the same audio, so the same finals."""
        fmt = options.format
        if fmt.encoding == FILE:
            samples, rate = await asyncio.to_thread(decode_file, data)
            options = StreamOptions(AudioFormat(FILE, rate, 1), options.language, False, False, options.word_offsets)
        else:
            if not data:
                raise InvalidInputError("audio_content is empty")
            samples, rate = decode_samples(data, fmt), fmt.sample_rate
        if len(samples) == 0:
            raise InvalidInputError("the clip holds no samples")
        self._check_length(len(samples), rate)
        stream = self.open_stream(options, deadline)
        results: list[RecognitionResult] = []
        try:
            stream.push(np.ascontiguousarray(samples))
            stream.finish()
            async for update in stream:
                results.extend(r for r in update.results if r.is_final)
        finally:
            stream.cancel()
        return results, len(samples) / rate

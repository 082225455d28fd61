"""The thread side of speech synthesis: sentences started, stepped, rendered and released.

Everything in :class:`Synthesizer` runs on the instance's thread, inside one step of the
step scheduler: it frees the calls leaving, starts the next sentence of each call that
needs one, advances every call's sentence together (one ``model.step``), and turns the
pieces each got into audio chunks with :class:`Render`, the code that the in-process
:func:`~modelplex.tasks.speech_synthesis.offline.synthesize` uses too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelplex.audio import StreamResampler
from modelplex.errors import ModelNotReadyError
from modelplex.server.runtimes.steps import StepSession, run_step, step_error
from modelplex.tasks.speech_synthesis.audio import PieceJoiner, encode
from modelplex.tasks.speech_synthesis.interface import AudioPiece, PreparedText, SpeechSynthesizer, SynthesisOptions
from modelplex.tasks.speech_synthesis.text import Segment

log = logging.getLogger(__name__)

__all__ = [
    "FADE_MS",
    "AudioChunk",
    "AudioFormat",
    "Render",
    "Sentence",
    "Summary",
    "SynthesisRequest",
    "SynthesisStream",
    "Synthesizer",
]

FADE_MS = 5.0
"""Fade-in and fade-out at each sentence's edges, so that sentences join without a click."""


@dataclass(frozen=True, slots=True)
class SynthesisRequest:
    """One Synthesize or SynthesizeWav call, as the core sees it."""

    text: str
    encoding: str = "linear16"
    """``"linear16"`` or ``"float32"``."""
    sample_rate: int | None = None
    """The rate the caller wants; None for the model's own."""
    options: SynthesisOptions = SynthesisOptions()


@dataclass(frozen=True, slots=True)
class Sentence:
    """A segment of the text with what the model made of it."""

    index: int
    segment: Segment
    prepared: PreparedText


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The stream's first message."""

    encoding: str
    sample_rate: int
    model_sample_rate: int


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Encoded audio voicing ``text[start:end]``."""

    audio: bytes
    start: int
    end: int
    sentence_index: int
    sample_offset: int
    sentence_end: bool


@dataclass(frozen=True, slots=True)
class Summary:
    """The stream's last message."""

    audio_seconds: float
    processing_seconds: float
    characters_dropped: int
    characters_normalized: int
    dropped_characters: str
    sentences: int
    time_to_first_audio_s: float
    samples: int


Message = AudioFormat | AudioChunk | Summary


class Render:
    """Turns the pieces of a call's sentences into encoded chunks: joins each sentence's
    pieces, resamples it on its own (so that each chunk voices one sentence exactly), puts
    ``pause_ms`` of silence after every sentence but the last, and encodes."""

    def __init__(
        self, sentences: Sequence[Sentence], model_rate: int, rate: int, encoding: str, pause_ms: float
    ) -> None:
        self.sentences = list(sentences)
        self.model_rate = model_rate
        self.rate = rate
        self.encoding = encoding
        self.pause = round(pause_ms * rate / 1000)
        self.fade = round(FADE_MS * model_rate / 1000)
        self.samples = 0
        self.current = -1
        voiced = [i for i, s in enumerate(self.sentences) if s.prepared.tokens]
        self.last = voiced[-1] if voiced else -1
        """The index of the last sentence with something to voice (no pause after it)."""
        self._joiner: PieceJoiner | None = None
        self._resampler: StreamResampler | None = None

    def begin(self, index: int) -> None:
        """Start the sentence at ``index`` of ``sentences``."""
        self.current = index
        self._joiner = PieceJoiner(self.fade)
        self._resampler = StreamResampler(self.model_rate, self.rate)

    def add(self, pieces: Sequence[AudioPiece]) -> tuple[AudioChunk | None, bool]:
        """The chunk the current sentence's new pieces make (None if no sample is final yet),
        and whether the sentence ended."""
        import torch

        assert self._joiner is not None and self._resampler is not None, "begin() first"
        parts = []
        ended = False
        for piece in pieces:
            if ended:
                raise ValueError("the model returned a piece after the sentence's final one")
            ended = piece.final
            parts.append(self._resampler.push(self._joiner.push(piece.audio, piece.tail, piece.final)))
        if ended:
            parts.append(self._resampler.finish())
            if self.current < self.last and self.pause:
                parts.append(torch.zeros(self.pause))
        audio = torch.cat(parts) if parts else torch.zeros(0)
        if not audio.numel() and not ended:
            return None, False
        sentence = self.sentences[self.current]
        chunk = AudioChunk(
            encode(audio, self.encoding),
            sentence.segment.start,
            sentence.segment.end,
            sentence.index,
            self.samples,
            ended,
        )
        self.samples += audio.numel()
        return chunk, ended


class SynthesisStream(StepSession[tuple[Message, ...]]):
    """The messages of one call, as an async iterator: each item is the messages one step
    produced for it (the format first, chunks, the summary last). ``cancel()`` stops the
    synthesis at its next step."""

    def __init__(self, request: SynthesisRequest, rate: int, deadline: float | None) -> None:
        super().__init__(deadline)
        self.request = request
        self.rate = rate
        self.arrived = time.perf_counter()
        self.render: Render | None = None
        """Set once the text is prepared; owned by the instance's thread once admitted."""
        self.utterance: Any = None
        self.next = 0
        self.first_audio_s = 0.0

    def summary(self) -> Summary:
        """The last message (marks the stream done)."""
        self.done = True
        render = self.render
        assert render is not None
        prepared = [s.prepared for s in render.sentences]
        dropped = "".join(dict.fromkeys("".join(p.dropped for p in prepared)))
        return Summary(
            audio_seconds=render.samples / render.rate,
            processing_seconds=time.perf_counter() - self.arrived,
            characters_dropped=sum(p.characters_dropped for p in prepared),
            characters_normalized=sum(p.characters_normalized for p in prepared),
            dropped_characters=dropped,
            sentences=sum(1 for p in prepared if p.tokens),
            time_to_first_audio_s=self.first_audio_s,
            samples=render.samples,
        )

    def unloaded(self) -> BaseException:
        """What a call ended by unloading the model gets (its audio is incomplete)."""
        return ModelNotReadyError("the model was unloaded while this text was being synthesized")


Event = tuple[SynthesisStream, tuple[Message, ...] | BaseException]


class Synthesizer:
    """The step and release functions of one model's step scheduler."""

    def __init__(self, name: str) -> None:
        self.name = name

    def step(
        self,
        model: SpeechSynthesizer,
        joining: Sequence[SynthesisStream],
        running: Sequence[SynthesisStream],
        leaving: Sequence[SynthesisStream],
    ) -> list[Event]:
        """On the instance's thread: free the leavers, start sentences, advance all one step."""
        events: list[Event] = []
        self.release(model, leaving)
        batch: list[SynthesisStream] = []
        for s in (*running, *joining):
            if s.utterance is None:
                try:
                    self._start_next(model, s)
                except Exception as e:
                    s.done = True
                    events.append((s, self._error(e)))
                    continue
            batch.append(s)
        if not batch:
            return events
        outputs = run_step(
            self.name,
            model,
            batch,
            lambda: model.step([s.utterance for s in batch]),
            release=self.release,
            events=events,
            what="utterances",
        )
        if outputs is None:
            return events
        for s, out in zip(batch, outputs, strict=True):
            try:
                if isinstance(out, BaseException):
                    raise out
                messages = self._advance(model, s, out)
            except Exception as e:
                s.done = True
                events.append((s, self._error(e)))
                self.release(model, [s])
                continue
            if messages:
                events.append((s, messages))
        return events

    def _start_next(self, model: SpeechSynthesizer, s: SynthesisStream) -> None:
        """Start the call's next sentence that has something to voice."""
        render = s.render
        assert render is not None, "a call joins only once its text is prepared"
        while not render.sentences[s.next].prepared.tokens:
            s.next += 1  # nothing to voice here; the runtime refused texts with nothing at all
        render.begin(s.next)
        s.utterance = model.start(render.sentences[s.next].prepared, s.request.options)

    def _advance(
        self, model: SpeechSynthesizer, s: SynthesisStream, pieces: Sequence[AudioPiece]
    ) -> tuple[Message, ...]:
        render = s.render
        assert render is not None
        chunk, ended = render.add(pieces)
        messages: list[Message] = []
        if chunk is not None:
            if not s.first_audio_s and chunk.audio:
                s.first_audio_s = time.perf_counter() - s.arrived
            messages.append(chunk)
        if ended:
            self.release(model, [s])
            s.next += 1
            if not any(sentence.prepared.tokens for sentence in render.sentences[s.next :]):
                messages.append(s.summary())
        return tuple(messages)

    def _error(self, e: BaseException) -> BaseException:
        return step_error(self.name, e)

    def release(self, model: SpeechSynthesizer, streams: Sequence[SynthesisStream]) -> None:
        """Free the calls' utterances; never raises."""
        for s in streams:
            utterance, s.utterance = s.utterance, None
            if utterance is None:
                continue
            try:
                model.release(utterance)
            except Exception:
                log.exception("model %r failed to release an utterance", self.name)

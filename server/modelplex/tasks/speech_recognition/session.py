"""One recognition stream as a step session: its input (event loop) and its state (thread).

The event loop pushes decoded chunks into the session's inbox; the step scheduler steps
the session on its instance's thread whenever it has unprocessed audio (a session with
nothing to do sits steps out). What one step does for a session is in
:mod:`modelplex.tasks.speech_recognition.steps`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelplex.errors import OutOfRangeError
from modelplex.server.runtimes.steps import StepSession
from modelplex.tasks.speech_recognition.audio import AudioFormat
from modelplex.tasks.speech_recognition.interface import Word

__all__ = [
    "MAX_BACKLOG_S",
    "AudioTooLongError",
    "RecognitionResult",
    "RecognitionStream",
    "RecognitionUpdate",
    "StreamOptions",
]


MAX_BACKLOG_S = 10.0
"""Audio a stream may have received and not processed yet, in seconds: past it the server stops
reading the stream until the steps catch up, so a client sending faster than the model runs
meets gRPC's flow control instead of filling the server's memory."""


class AudioTooLongError(OutOfRangeError):
    """The stream or clip is longer than the model's max_audio_s (gRPC OUT_OF_RANGE)."""


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """What a client asked of one stream or clip, checked."""

    format: AudioFormat
    language: str = ""
    """One of the model's languages, or "" when it names none."""
    interim_results: bool = False
    single_utterance: bool = False
    word_offsets: bool = False


@dataclass(frozen=True, slots=True)
class RecognitionResult:
    """The transcript of one segment, final or interim; times in seconds of the stream."""

    transcript: str
    is_final: bool
    start_s: float
    end_s: float
    segment: int
    stability: float = 0.0
    words: tuple[Word, ...] = ()
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class RecognitionUpdate:
    """What one step gave one stream: finals of ended segments, then the open one's interim."""

    results: tuple[RecognitionResult, ...]
    audio_processed_s: float
    end_of_utterance: bool = False

    @property
    def empty(self) -> bool:
        """Nothing for the client: the step only moved the stream on (input backpressure)."""
        return not self.results and not self.end_of_utterance


class AudioBuffer:
    """The stream's audio at the model's rate, indexed from the start of the stream; the
    part no segment or window needs any more is dropped."""

    def __init__(self) -> None:
        import torch

        self._data = torch.zeros(0)
        self.base = 0

    @property
    def end(self) -> int:
        return self.base + len(self._data)

    def append(self, samples: Any) -> None:
        import torch

        if len(samples):
            self._data = torch.cat([self._data, samples])

    def slice(self, start: int, end: int) -> Any:
        assert start >= self.base, "that audio was dropped"
        return self._data[start - self.base : end - self.base]

    def drop_before(self, pos: int) -> None:
        if pos > self.base:
            self._data = self._data[pos - self.base :].clone()
            self.base = pos


@dataclass
class OpenSegment:
    """The open segment's interim state (thread side)."""

    index: int = 0
    frames: list[int] = field(default_factory=list)
    """CTC models: the best label of each frame decoded so far, from the segment's start."""
    decoded_to: int = 0
    """Whole-segment models: the stream position of the last re-decode."""
    last_text: str | None = None


class RecognitionStream(StepSession[RecognitionUpdate]):
    """The updates of one stream or clip, as an async iterator; ``cancel()`` ends it at the
    next step and frees its state."""

    def __init__(self, options: StreamOptions, deadline: float | None) -> None:
        super().__init__(deadline)
        self.options = options
        self._inbox: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.received = 0
        """Raw samples pushed so far (event loop)."""
        self.finishing = False
        """The client's audio ended; the last step flushes and ends the stream."""
        self.decided_s = 0.0
        """Seconds of the stream the steps have processed (set on the instance's thread)."""
        self._room = asyncio.Event()
        # Thread side, set up when the session is admitted.
        self.state: Any = None

    # -- event loop -----------------------------------------------------------------------

    def push(self, samples: np.ndarray) -> None:
        """Queue decoded raw samples for the next step."""
        if len(samples) == 0 or self.done:
            return
        with self._lock:
            self._inbox.append(samples)
        self.received += len(samples)
        self._wake()

    def put(self, item: RecognitionUpdate | BaseException, *, final: bool = False) -> None:
        super().put(item, final=final)
        self._room.set()  # a step ran: the backlog shrank

    def backlog_s(self) -> float:
        """Seconds of audio received and not processed yet."""
        return self.received / self.options.format.sample_rate - self.decided_s

    async def wait_for_room(self) -> None:
        """Return once the backlog is under :data:`MAX_BACKLOG_S` (or the stream ended)."""
        while self.backlog_s() > MAX_BACKLOG_S and not (self.done or self.cancelled):
            self._room.clear()
            await self._room.wait()

    def finish(self) -> None:
        """The client's audio ended."""
        self.finishing = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error`` (its reader raises it); the scheduler drops the
        session at its next step and frees it."""
        if self.done or self.cancelled:
            return
        self.put(error)
        self.cancelled = True  # put() marked it done; this makes the scheduler let it go
        self._room.set()
        self._wake()

    @property
    def paused(self) -> bool:
        """Sits the step out: no new audio and nothing left to process, or its reader is behind."""
        return super().paused or not (self.has_input or self.finishing or self._pending())

    @property
    def has_input(self) -> bool:
        return bool(self._inbox)

    def _pending(self) -> bool:
        return self.state is not None and self.state.pending()

    # -- thread side ----------------------------------------------------------------------

    def take_input(self) -> list[np.ndarray]:
        """The chunks pushed since the last step (called on the instance's thread)."""
        with self._lock:
            chunks, self._inbox = self._inbox, []
        return chunks

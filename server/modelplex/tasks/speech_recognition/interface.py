"""Speech recognition: the interfaces a model implements, their value types and the variant meta.

Two kinds of recognizer fit the task:

- :class:`CTCRecognizer`: a frame-synchronous CTC model (Wav2Vec 2.0, DeepSpeech). It
  streams: the server runs it over windows of the open segment (with left context and a
  small look-ahead) for interim results, and once over each finished segment for its
  final result. The server owns CTC decoding (greedy, with word time offsets).
- :class:`SegmentRecognizer`: a model that only decodes a whole segment (encoder-decoder
  ASR). The server gives interim results by re-decoding the open segment every
  ``interim_interval_ms`` of new audio (or none), and a final result per segment.

Audio reaches a model as 1-D float32 CPU tensors of mono samples in [-1, 1], at the
model's ``sample_rate``: the server decodes, mixes down and resamples. Every method is
called on the instance's thread.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelplex.specs import VariantMeta
from modelplex.tasks.base import TaskModel

__all__ = [
    "CTCRecognizer",
    "SegmentRecognizer",
    "SpeechRecognitionMeta",
    "SpeechRecognizer",
    "Transcript",
    "Word",
]


@dataclass(frozen=True)
class SpeechRecognitionMeta(VariantMeta):
    """What a speech recognizer's variant says about itself."""

    sample_rate: int | None = None
    """The rate the model hears, in Hz."""
    languages: tuple[str, ...] = ()
    """Languages it transcribes (``"en"``); empty for one, unnamed."""
    labels: tuple[str, ...] = ()
    """A CTC model's output labels, in order, where the variant fixes them."""


@dataclass(frozen=True, slots=True)
class Word:
    """One recognized word and where it is, in seconds from the start of the audio given."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Transcript:
    """The transcript of one segment."""

    text: str
    words: tuple[Word, ...] = ()
    """Word time offsets, where the model gives them (CTC models always do)."""
    confidence: float | None = None
    """In [0, 1], where the model gives one."""


class SpeechRecognizer(TaskModel):
    """The base of both kinds: what the server asks of every recognizer."""

    sample_rate: int
    """The rate the model hears, in Hz (16000 for Wav2Vec 2.0 and DeepSpeech)."""
    languages: tuple[str, ...] = ()
    """Languages it transcribes; the first is the default. Empty: one, unnamed."""

    @property
    def streaming(self) -> bool:
        """Whether the server may run the model over windows (frame-synchronous CTC)."""
        return False

    @abstractmethod
    def transcribe(self, segments: Sequence[Any], language: str) -> list[Transcript]:
        """One pass over each whole segment (1-D float32 tensors at ``sample_rate``): one
        transcript per segment, in order, each with word times relative to its segment.
        ``language`` is one of ``languages`` (or "" when that is empty). The result of a
        segment must not depend on the other segments of the call."""


class SegmentRecognizer(SpeechRecognizer):
    """A model that decodes only whole segments (encoder-decoder ASR): implement
    :meth:`transcribe`, ``load`` and ``unload``. Interim results re-decode the open segment."""


class CTCRecognizer(SpeechRecognizer):
    """A frame-synchronous CTC model: it maps audio to one distribution over ``labels`` per
    frame of ``samples_per_frame`` samples, and the server decodes those.

    Frame ``j`` of the emissions of an input that starts at sample ``s`` (a multiple of
    ``samples_per_frame``) is frame ``s / samples_per_frame + j`` of the stream: the server
    cuts windows on frame boundaries and keeps the frames of each window that it owns."""

    labels: Sequence[str]
    """The output labels, indexed by class: characters, the blank, the word delimiter."""
    blank: int = 0
    """The index of the CTC blank."""
    word_delimiter: str = " "
    """The label that separates words (``"|"`` for Wav2Vec 2.0's vocabularies); it becomes a space."""
    samples_per_frame: int
    """The model's frame hop, in samples at ``sample_rate`` (320 for Wav2Vec 2.0)."""
    ignored_labels: frozenset[int] = frozenset()
    """Label indices that never reach a transcript (``<s>``, ``</s>``, ``<unk>``, padding)."""

    @property
    def streaming(self) -> bool:
        return True

    @abstractmethod
    def emissions(self, audio: Sequence[Any]) -> list[Any]:
        """The frame scores of each input: a (frames, len(labels)) float CPU tensor of logits
        or log-probabilities per input, in order. The server passes inputs of equal length in
        one call, so a model may stack them without padding; an input's result must not
        depend on the others of the call."""

    def transcribe(self, segments: Sequence[Any], language: str) -> list[Transcript]:
        """Greedy CTC decoding of one pass over each segment; override for a beam search."""
        from modelplex.tasks.speech_recognition.ctc import greedy_transcript

        frame_s = self.samples_per_frame / self.sample_rate
        # One call per segment: segments differ in length, and emissions() takes equal ones.
        return [greedy_transcript(self, self.emissions([s])[0].argmax(-1).tolist(), frame_s) for s in segments]

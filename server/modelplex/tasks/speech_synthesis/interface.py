"""Speech synthesis: the interface a text-to-speech model implements, and its value types.

The server owns the text and the audio around the model: it splits the request's text
into sentences (long ones at clause boundaries), asks the model to :meth:`prepare` each
one (normalise it and encode it into the model's symbols), and then advances the
sentences of every call running on an instance together, one :meth:`step` at a time, on
the instance's thread. Each step returns, per sentence, the audio pieces that became
ready; the server cross-fades the pieces, resamples, encodes and streams them. Calls
join and leave between steps, so a cancelled call stops at its next step (the next
sentence or piece), and a sentence of one call shares each step with those of others.

The one exception to "on the instance's thread": :meth:`SpeechSynthesizer.prepare` runs
when a request is submitted, on the server's small preparing executor; see its docstring.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelplex.specs import VariantMeta
from modelplex.tasks.base import TaskModel

__all__ = ["AudioPiece", "PreparedText", "SpeechSynthesisMeta", "SpeechSynthesizer", "SynthesisOptions"]


@dataclass(frozen=True)
class SpeechSynthesisMeta(VariantMeta):
    """What a text-to-speech variant says about itself."""

    sample_rate: int | None = None
    """The rate the model synthesizes at, in Hz."""
    text_processor: str = ""
    """How text becomes the model's input: ``"characters"``, ``"phonemes"``."""
    vocoder: str = ""
    """What turns the model's spectrogram into audio: ``"griffin-lim"``, ``"waveglow"``, ..."""


@dataclass(frozen=True, slots=True)
class PreparedText:
    """One sentence as the model will voice it: returned by :meth:`SpeechSynthesizer.prepare`."""

    tokens: Sequence[int]
    """The model's input symbols; empty when nothing in the sentence can be voiced."""
    text: str = ""
    """The normalised text the tokens spell (for logs and tests)."""
    characters_normalized: int = 0
    """Characters of the sentence rewritten before encoding (digits, accents, abbreviations)."""
    characters_dropped: int = 0
    """Characters of the sentence left out because the model cannot voice them."""
    dropped: str = ""
    """The distinct characters left out, in order of first appearance."""


@dataclass(frozen=True, slots=True)
class SynthesisOptions:
    """How one call wants its speech. The server has validated every field."""

    speaking_rate: float = 1.0
    """Relative speed; anything but 1 only reaches models with ``supports_speaking_rate``."""


@dataclass(frozen=True, slots=True)
class AudioPiece:
    """A piece of one sentence's audio, at the model's ``sample_rate``, in order.

    Pieces of a sentence may overlap: a piece's last ``tail`` samples are voiced again
    by the first ``tail`` samples of the sentence's next piece, and the server
    cross-fades the two (so that a sentence vocoded in windows has no seams). The
    sentence's last piece has ``final`` set and ``tail`` 0."""

    audio: Any
    """A 1-D float tensor (or array) of samples in [-1, 1], on any device."""
    tail: int = 0
    """Samples at the end of this piece that the next piece of the sentence starts with."""
    final: bool = False
    """This is the sentence's last piece."""


class SpeechSynthesizer(TaskModel):
    """A text-to-speech model that the server advances step by step.

    An *utterance* is whatever object :meth:`start` returns for one sentence (its
    decoder state and its random generator, typically); the server only hands it back.
    All methods but :meth:`prepare` run on the instance's thread, one at a time.
    """

    sample_rate: int
    """The rate of the audio the model produces, in Hz."""
    supports_speaking_rate: bool = False
    """Whether :class:`SynthesisOptions` ``speaking_rate`` other than 1 is honoured."""
    description: str = ""
    """What the model is, in a few words (reported in ModelInfo)."""

    @abstractmethod
    def prepare(self, text: str) -> PreparedText:
        """Normalise one sentence and encode it into the model's input symbols.

        Called when a request is submitted, once per sentence, before the request waits
        for a slot, on the server's preparing executor: **not** on the instance's thread,
        possibly while :meth:`step` runs on it or another ``prepare`` on another thread.
        So it must be thread-safe: read only what ``load()`` set up, touch no weights, no
        utterance, no shared mutable state. Return empty ``tokens`` (with the characters
        counted as dropped) for a sentence with nothing to voice; the server skips it, and
        refuses a request none of whose sentences can be voiced."""

    @abstractmethod
    def start(self, prepared: PreparedText, options: SynthesisOptions) -> Any:
        """A new utterance for one prepared sentence (non-empty ``tokens``). It may run the
        model's encoder; the decoding happens in :meth:`step`."""

    @abstractmethod
    def step(self, utterances: Sequence[Any]) -> Sequence[Sequence[AudioPiece] | Exception]:
        """Advance every utterance together by one step; return, for each, in order, the
        audio pieces that became ready (possibly none).

        A step should be short (a few decoder frames and the vocoding of a finished
        piece), since calls are cancelled and joined between steps. The output of an
        utterance must not depend on which others share the step. Once an utterance has
        returned its ``final`` piece it is never stepped again. When something fails for
        one utterance only, return the exception in its place: that call fails and the
        others go on. Raising fails every call of the step."""

    @abstractmethod
    def release(self, utterance: Any) -> None:
        """Free what an utterance holds. Called once, when it finished, or when its call was
        cancelled or failed; it is never stepped again."""

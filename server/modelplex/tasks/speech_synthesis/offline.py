"""Speech synthesis in process, without a server: the reference the served stream equals.

:func:`synthesize` splits, prepares, steps and renders a text with exactly the code the
server runs (:func:`~modelplex.tasks.speech_synthesis.runtime.prepare_text`,
:class:`~modelplex.tasks.speech_synthesis.synth.Render`), one sentence at a time and
alone in each step. Tests compare a served stream with it, and the benchmark measures
the server's overhead against it. Call it on a loaded model (``load()`` done).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from modelplex.tasks.speech_synthesis.interface import SpeechSynthesizer, SynthesisOptions
from modelplex.tasks.speech_synthesis.runtime import prepare_text
from modelplex.tasks.speech_synthesis.settings import SpeechSynthesisSettings
from modelplex.tasks.speech_synthesis.synth import AudioChunk, Render

__all__ = ["OfflineSynthesis", "synthesize"]


@dataclass(frozen=True)
class OfflineSynthesis:
    """The chunks an in-process synthesis produced, with its timings."""

    chunks: list[AudioChunk]
    sample_rate: int
    first_audio_s: float
    """From the call to its first chunk with audio."""
    total_s: float

    @property
    def audio(self) -> bytes:
        """The whole encoded audio."""
        return b"".join(c.audio for c in self.chunks)


def synthesize(
    model: SpeechSynthesizer,
    text: str,
    *,
    encoding: str = "float32",
    sample_rate: int | None = None,
    settings: SpeechSynthesisSettings | None = None,
    options: SynthesisOptions | None = None,
) -> OfflineSynthesis:
    """Synthesize ``text`` with ``model`` in this thread; the chunks the server would stream."""
    settings = settings or SpeechSynthesisSettings()
    options = options or SynthesisOptions()
    started = time.perf_counter()
    rate = sample_rate or int(model.sample_rate)
    sentences = prepare_text(model, "in-process", text, settings.max_sentence_chars)
    render = Render(sentences, int(model.sample_rate), rate, encoding, settings.sentence_pause_ms)
    chunks: list[AudioChunk] = []
    first = 0.0
    for sentence in sentences:
        if not sentence.prepared.tokens:
            continue
        render.begin(sentence.index)
        utterance = model.start(sentence.prepared, options)
        try:
            ended = False
            while not ended:
                [out] = model.step([utterance])
                if isinstance(out, BaseException):
                    raise out
                chunk, ended = render.add(out)
                if chunk is not None:
                    if not first and chunk.audio:
                        first = time.perf_counter() - started
                    chunks.append(chunk)
        finally:
            model.release(utterance)
    return OfflineSynthesis(chunks, rate, first, time.perf_counter() - started)

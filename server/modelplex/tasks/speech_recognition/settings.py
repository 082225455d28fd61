"""The serving settings of a speech recognizer."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelplex.specs import ServerPath

__all__ = ["SpeechRecognitionSettings"]


class SpeechRecognitionSettings(BaseModel):
    """Keys of a speech recognizer's ``[[models]]`` entry (and of ``SpeechRecognitionSettings``
    in LoadModel)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_batch_size: int = Field(default=32, ge=1, le=256)
    """The most streams one instance steps together (an idle live stream holds its slot but costs
    nothing); the others wait for a slot."""
    max_queue_size: int = Field(default=64, ge=1, le=100_000)
    """Streams waiting for a slot before new ones get RESOURCE_EXHAUSTED."""
    max_audio_s: float = Field(default=3600.0, gt=0, le=86_400)
    """The longest stream or clip, in seconds; longer ones fail with OUT_OF_RANGE."""
    max_chunk_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 30)
    """The largest audio message of a stream; larger ones get RESOURCE_EXHAUSTED."""
    max_segment_s: float = Field(default=30.0, ge=1, le=600)
    """The longest segment: speech that goes on is cut there (each segment is one final pass)."""
    vad: Literal["auto", "silero", "energy", "none"] = "auto"
    """How segments end at the end of speech: ``silero`` (silero-vad), ``energy`` (frame level),
    ``none`` (only at max_segment_s and the end of the stream), ``auto`` (silero if installed)."""
    min_silence_ms: float = Field(default=500.0, ge=32, le=10_000)
    """Silence that ends a segment."""
    speech_pad_ms: float = Field(default=100.0, ge=0, le=2000)
    """Audio kept before speech starts and after it ends, in each segment."""
    window_ms: float = Field(default=1000.0, ge=20, le=30_000)
    """Streaming (CTC) models: the audio each interim step decodes."""
    left_context_ms: float = Field(default=500.0, ge=0, le=30_000)
    """Streaming models: the audio before each window that the model hears (its frames are dropped)."""
    lookahead_ms: float = Field(default=250.0, ge=0, le=10_000)
    """Streaming models: the audio after each window that the model hears (so interim results
    lag the stream by window + look-ahead at most)."""
    interim_interval_ms: float = Field(default=1000.0, ge=0, le=60_000)
    """Whole-segment models: new audio between two re-decodes of the open segment; 0 sends no
    interim results."""
    decoder: Literal["greedy", "beam"] = "greedy"
    """CTC models: how final results are decoded. ``greedy`` (best label per frame) or ``beam``
    (torchaudio's ctc_decoder, flashlight-text: beam search with an optional lexicon and n-gram
    LM). Interim results are greedy either way."""
    lexicon: Annotated[str | None, ServerPath()] = Field(default=None, min_length=1)
    """``decoder = "beam"``: a lexicon file, one word per line, optionally followed by its spelling
    in the model's labels; the transcript then holds lexicon words only."""
    lm: Annotated[str | None, ServerPath()] = Field(default=None, min_length=1)
    """``decoder = "beam"`` with a lexicon: an n-gram language model over the lexicon's words, an
    ARPA file or a KenLM binary."""
    beam_size: int = Field(default=50, ge=1, le=10_000)
    """``decoder = "beam"``: hypotheses kept after each frame."""
    beam_threshold: float = Field(default=50.0, gt=0, le=10_000)
    """``decoder = "beam"``: hypotheses scoring this much below the best are pruned."""
    lm_weight: float = Field(default=2.0, ge=-100, le=100)
    """``decoder = "beam"`` with an LM: the weight of the LM's log-probabilities."""
    word_score: float = Field(default=0.0, ge=-1000, le=1000)
    """``decoder = "beam"``: a score added per word (positive favours more words)."""

    @model_validator(mode="after")
    def _segment_holds_a_window(self) -> SpeechRecognitionSettings:
        if self.window_ms > self.max_segment_s * 1000:
            raise ValueError("window_ms must not exceed max_segment_s")
        return self

    @model_validator(mode="after")
    def _beam_keys_need_a_beam(self) -> SpeechRecognitionSettings:
        if self.decoder == "greedy":
            stray = sorted(set(_BEAM_KEYS) & self.model_fields_set)
            if stray:
                raise ValueError(f'{", ".join(stray)} only apply to decoder = "beam" (the decoder is "greedy")')
        if self.lm is not None and self.lexicon is None:
            raise ValueError("lm needs a lexicon: the language model scores the lexicon's words")
        if "lm_weight" in self.model_fields_set and self.lm is None:
            raise ValueError("lm_weight is set but no lm is")
        return self


_BEAM_KEYS = ("lexicon", "lm", "beam_size", "beam_threshold", "lm_weight", "word_score")

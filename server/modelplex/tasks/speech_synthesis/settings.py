"""The serving settings of a speech-synthesis model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SpeechSynthesisSettings"]


class SpeechSynthesisSettings(BaseModel):
    """Keys of a speech synthesizer's ``[[models]]`` entry (and of ``SpeechSynthesisSettings``
    in LoadModel)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_batch_size: int = Field(default=8, ge=1, le=256)
    """Sentences (of different calls) one instance synthesizes together; other calls wait."""
    max_queue_size: int = Field(default=64, ge=1, le=100_000)
    """Calls waiting for a slot (or being prepared) before new ones get RESOURCE_EXHAUSTED."""
    max_text_chars: int = Field(default=5000, ge=1, le=1_000_000)
    """The most characters one request's text may have; more is INVALID_ARGUMENT."""
    max_sentence_chars: int = Field(default=200, ge=10, le=100_000)
    """Sentences longer than this are split at clause boundaries (else between words)."""
    sentence_pause_ms: int = Field(default=150, ge=0, le=10_000)
    """Silence between two sentences (or clauses) of a text."""

"""The serving settings of a text-generation model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TextGenerationSettings"]


class TextGenerationSettings(BaseModel):
    """Keys of a text generator's ``[[models]]`` entry (and of ``TextGenerationSettings``
    in LoadModel)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_batch_size: int = Field(default=16, ge=1, le=1024)
    """The most streams one instance decodes together; the others wait to join."""
    max_queue_size: int = Field(default=256, ge=1, le=1_000_000)
    """Streams waiting for a slot (or being tokenized) before new ones get RESOURCE_EXHAUSTED."""
    max_new_tokens: int = Field(default=512, ge=1, le=1_000_000)
    """The most tokens one request may ask for; more is INVALID_ARGUMENT."""
    max_prompt_chars: int | None = Field(default=None, ge=1, le=100_000_000)
    """The longest prompt, in characters, checked before it is tokenized (a huge prompt would
    hold the tokenizer and memory for nothing); more is INVALID_ARGUMENT. None: 32 characters
    per token of the context window (no tokenizer packs more into one token in practice)."""

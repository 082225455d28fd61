"""The settings every text-generation spec takes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TextSettings"]


class TextSettings(BaseModel):
    """Settings of a text-generation model (the ``settings`` table of a model's config).

    The serving limits (``max_new_tokens``, ``max_batch_size``, ``max_queue_size``) are the
    task's, keys of the model's entry itself: see docs/configuration.md."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Parameter and activation dtype. Half precision is allowed on CUDA devices only."""

    hub_id: str | None = Field(default=None, min_length=1)
    """The Hugging Face model id to load when weights are "pretrained" or "random"; required by
    ``causal-lm`` and ``seq2seq-lm`` unless weights name a local folder; overrides the variant's id."""

    context_length: int | None = Field(default=None, ge=2)
    """The longest prompt (a causal LM: prompt plus output), in tokens; defaults to the model's
    own (``n_positions``/``max_position_embeddings``, or the tokenizer's ``model_max_length``)."""

"""The settings every text-generation spec takes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelplex.specs import ServerPath

__all__ = ["TextSettings"]


class TextSettings(BaseModel):
    """Settings of a text-generation model (the ``settings`` table of a model's config).

    The serving limits (``max_new_tokens``, ``max_batch_size``, ``max_queue_size``) are the
    task's, keys of the model's entry itself: see docs/configuration.md."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Parameter and activation dtype. Half precision is allowed on CUDA devices only."""

    cpu_prepack: bool = True
    """On a CPU, run the model's float32 linear layers through oneDNN with their weights
    reordered once at load (``modelplex.kit.prepack_linears``): a decode step of a
    distilgpt2-sized model is 1.5x faster at 1 row and 2.3x at 16 (docs/benchmarks.md §4.2).
    Only the order of float32 sums changes. Off: PyTorch's default products."""

    hub_id: str | None = Field(default=None, min_length=1)
    """The Hugging Face model id to load when weights are "pretrained" or "random"; required by
    ``causal-lm`` and ``seq2seq-lm`` unless weights name a local folder; overrides the variant's id."""

    context_length: int | None = Field(default=None, ge=2)
    """The longest prompt (a causal LM: prompt plus output), in tokens; defaults to the model's
    own (``n_positions``/``max_position_embeddings``, or the tokenizer's ``model_max_length``)."""

    chat_template: str | None = Field(default=None, min_length=1)
    """A Jinja chat template (the text) for the Chat RPC, for a model folder without one (or to
    replace its own); rendered by the tokenizer's ``apply_chat_template``."""

    chat_template_file: Annotated[Path | None, ServerPath()] = None
    """A file holding the chat template (e.g. a ``.jinja`` of the model's repository); overrides
    ``chat_template``."""

    prefill_chunk_tokens: int = Field(default=256, ge=16, le=1_000_000)
    """While sequences are decoding, new prompts are prefilled at most this many tokens per step
    (a long prompt over several steps), so that they delay each running token by one chunk at
    most. With nothing running, a prompt is prefilled whole."""

    prefix_cache_tokens: int = Field(default=0, ge=0, le=100_000_000)
    """Tokens of prompt prefixes whose KV cache is kept for later prompts that start the same
    way (a chat's system prompt, a conversation's earlier turns); 0 turns prefix caching off."""

    prefix_block_tokens: int = Field(default=32, ge=1, le=4096)
    """Prefixes are kept at multiples of this many tokens."""

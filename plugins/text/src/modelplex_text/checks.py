"""What the decode loop can serve correctly, checked when a model loads.

A model is refused (ModelLoadError, with the reason) rather than served wrong:

* a causal LM whose cache is not attention keys and values, full or in a sliding window
  (recurrent or linear-attention state like Mamba's, chunked attention, layers sharing
  another layer's cache): rows of such state cannot be left-padded into a shared batch;
* RoPE scaling that changes with the longest sequence of the batch (``dynamic``,
  ``longrope``) past its original window: a sequence's positions would depend on its
  neighbours. Within the original window it is exact, so the context length defaults to it;
* any model whose logits, batched with another sequence of a different length and joined
  mid-decode, differ from its logits alone (:func:`probe`): this catches a model that
  ignores the position ids or the padding mask, whatever its architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from modelplex import ModelLoadError

__all__ = ["check_rope", "probe", "rope_limit"]

_BATCH_DEPENDENT_ROPE = ("dynamic", "longrope")


def _rope_parameters(config: Any) -> list[dict[str, Any]]:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    if not isinstance(params, dict):
        return []
    if all(isinstance(v, dict) for v in params.values()):  # per layer type (Gemma 3)
        return list(params.values())
    return [params]


def rope_limit(config: Any) -> int | None:
    """The longest sequence for which the model's RoPE does not depend on its batch, or None."""
    limits = []
    for p in _rope_parameters(config):
        if p.get("rope_type", p.get("type")) in _BATCH_DEPENDENT_ROPE:
            original = p.get("original_max_position_embeddings") or getattr(
                config, "original_max_position_embeddings", None
            )
            limits.append(int(original or config.max_position_embeddings))
    return min(limits) if limits else None


def check_rope(config: Any, name: str, context_length: int) -> None:
    """ModelLoadError when ``context_length`` goes past a batch-dependent RoPE's window."""
    limit = rope_limit(config)
    if limit is not None and context_length > limit:
        raise ModelLoadError(
            f"model {name!r} ({config.model_type}) scales its rotary positions by the longest sequence "
            f"in a batch past {limit} tokens, so a sequence's output would depend on the others batched "
            f"with it: set settings.context_length to at most {limit} (it is {context_length})"
        )


Logits = Callable[[list[list[int]], list[int]], list[torch.Tensor]]
"""``(prompts, join_at)`` -> each prompt's logits over three steps (prefill and two decodes),
prompt ``i`` joining the batch at step ``join_at[i]``."""


def probe(
    name: str,
    model_type: str,
    batched: Logits,
    alone: Callable[[list[int], int], torch.Tensor],
    vocab_size: int,
    *,
    window: int | None,
    tolerance: float,
) -> None:
    """ModelLoadError unless the logits the decode loop computes for two prompts of different
    lengths, the second joining the first mid-decode, equal each prompt's own logits computed
    without a cache (``alone(tokens, steps)``: the last ``steps`` positions' logits).

    With a sliding window of at most 64 tokens the prompts are longer than the window, so the
    check covers the sliding layers too (a longer window would make the check slow to load)."""
    short, long = (3, 7) if window is None or window > 64 else (window + 3, window + 9)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, max(2, vocab_size), (n,), generator=gen).tolist() for n in (long, short)]
    try:
        got = batched(prompts, [0, 1])
    except Exception as e:
        raise ModelLoadError(
            f"model {name!r} ({model_type}) fails in modelplex's continuous batching ({type(e).__name__}: {e}): "
            "its cache or its inputs are not those of an attention-only causal LM"
        ) from e
    worst = 0.0
    for prompt, logits in zip(prompts, got, strict=True):
        tokens = prompt + [int(t) for t in logits[:-1].argmax(dim=-1).tolist()]
        expected = alone(tokens, logits.shape[0])
        scale = 1.0 + float(expected.abs().max())
        worst = max(worst, float((logits - expected).abs().max()) / scale)
    if not worst <= tolerance:
        raise ModelLoadError(
            f"model {name!r} ({model_type}) gives other logits when its sequences are batched with "
            f"others of different lengths (relative difference {worst:.2g}, allowed {tolerance:g}): "
            "modelplex's continuous batching cannot serve this architecture correctly"
        )


def reference_logits(model: Any, device: torch.device) -> Callable[[Sequence[int], int], torch.Tensor]:
    """The logits of the last ``steps`` positions of ``tokens``, from one forward pass without a cache."""

    @torch.inference_mode()
    def alone(tokens: Sequence[int], steps: int) -> torch.Tensor:
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=device)
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        return out.logits[0, -steps:].float()

    return alone

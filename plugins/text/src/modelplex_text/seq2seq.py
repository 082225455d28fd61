"""Continuous batching of a seq2seq LM (T5, BART): each sequence keeps its own caches.

New prompts are encoded together (right-padded into the encoder, masked) and run their
first decoder step together. Running sequences then share one decoder pass: the encoder
states and cross-attention caches are right-padded and masked; T5-style models (relative
position buckets, which left padding leaves intact) left-pad the decoder caches, so all
running sequences share a pass; other models (absolute decoder positions, which left
padding would shift, like BART's) batch the sequences whose decoders have the same length,
one pass per length. After the pass each sequence keeps its own slice of the caches, so
it can leave between any two steps, and a pass that fails is retried one sequence at a
time: only the sequences that fail alone get the exception.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from modelplex_text.sampling import Sampler

log = logging.getLogger(__name__)

__all__ = ["Seq2SeqEngine", "Seq2SeqSequence"]

# Decoder position schemes for which a left-padded decoder cache is exact.
_RELATIVE_POSITIONS = frozenset({"t5", "mt5", "umt5"})

Row = torch.Tensor | Exception | None


@dataclass(eq=False)
class Seq2SeqSequence:
    prompt: list[int]
    sampler: Sampler
    last: int | None = None  # the token fed at the next step; None before the prefill
    self_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    encoder_states: torch.Tensor | None = None  # [1, source_len, d_model]
    released: bool = False

    @property
    def length(self) -> int:
        """Tokens in the decoder's self-attention cache."""
        return self.self_kv[0][0].shape[-2] if self.self_kv else 0

    @property
    def prefilling(self) -> bool:
        return self.last is None


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


class Seq2SeqEngine:
    """The forward passes of an encoder-decoder model's sequences."""

    def __init__(self, model: Any, device: torch.device) -> None:
        self.model = model
        self.device = device
        config = model.config
        self.pad_decoder = config.model_type in _RELATIVE_POSITIONS
        start = getattr(config, "decoder_start_token_id", None)
        self.decoder_start = start if start is not None else config.pad_token_id
        self.passes = 0

    def step(self, sequences: Sequence[Seq2SeqSequence]) -> dict[int, Row]:
        results: dict[int, Row] = {}
        new = [s for s in sequences if s.prefilling]
        if new:
            self._guarded(self._prefill, new, results)
        running = [s for s in sequences if not s.prefilling and id(s) not in results]
        for group in [running] if self.pad_decoder else _by_length(running):
            if group:
                self._guarded(self._decode, group, results)
        return results

    def prefill(self, sequences: Sequence[Seq2SeqSequence]) -> dict[int, Row]:
        """New sequences' encoder passes and first tokens (sequences share nothing here)."""
        return self.step([s for s in sequences if s.prefilling])

    def release(self, sequence: Seq2SeqSequence) -> None:
        sequence.released = True
        sequence.self_kv, sequence.cross_kv, sequence.encoder_states = [], [], None

    def clear(self) -> None:
        """Nothing is shared between sequences."""

    def _guarded(self, run: Any, group: list[Seq2SeqSequence], results: dict[int, Row]) -> None:
        """``run(group)``; when it raises for a group, each sequence alone."""
        try:
            rows = run(group)
        except Exception as e:
            if len(group) == 1:
                log.exception("a sequence failed its step")
                results[id(group[0])] = e
                return
            log.warning("a batched pass failed: retrying its %d sequences one by one", len(group))
            for s in group:
                self._guarded(run, [s], results)
            return
        for s, row in zip(group, rows, strict=True):
            results[id(s)] = row

    def _prefill(self, group: list[Seq2SeqSequence]) -> torch.Tensor:
        """Encode the prompts in one pass (right-padded, masked) and run their first decoder
        step together; each sequence keeps its encoder states and caches without the padding."""
        self.passes += 1
        lengths = [len(s.prompt) for s in group]
        longest = max(lengths)
        pad_id = self.model.config.pad_token_id or 0
        ids = torch.full((len(group), longest), pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for row, (s, n) in enumerate(zip(group, lengths, strict=True)):
            ids[row, :n] = torch.tensor(s.prompt, dtype=torch.long)
            mask[row, :n] = 1
        states = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        start = torch.full((len(group), 1), self.decoder_start, dtype=torch.long, device=self.device)
        out = self.model(encoder_outputs=(states,), attention_mask=mask, decoder_input_ids=start, use_cache=True)
        self_layers = _layers(out.cache.self_attention_cache)
        cross_layers = _layers(out.cache.cross_attention_cache)
        for row, (s, n) in enumerate(zip(group, lengths, strict=True)):
            # Copies, not views: these live as long as the sequence, and a view would keep the
            # whole batch's tensors alive. (The self-attention caches are replaced every step.)
            s.encoder_states = states[row : row + 1, :n].clone()
            s.self_kv = [(k[row : row + 1], v[row : row + 1]) for k, v in self_layers]
            s.cross_kv = [(k[row : row + 1, :, :n].clone(), v[row : row + 1, :, :n].clone()) for k, v in cross_layers]
        return out.logits[:, -1]

    def _decode(self, group: list[Seq2SeqSequence]) -> torch.Tensor:
        from transformers import DynamicCache, EncoderDecoderCache

        self.passes += 1
        sources = [s.encoder_states.shape[1] for s in group]  # type: ignore[union-attr]
        longest = max(sources)
        pads = [longest - n for n in sources]
        lengths = [s.length for s in group]
        target_pads = [max(lengths) - n for n in lengths]  # zero unless pad_decoder
        n_layers = len(group[0].self_kv)
        self_cache = DynamicCache(
            [
                (
                    _cat_left([s.self_kv[i][0] for s in group], target_pads),
                    _cat_left([s.self_kv[i][1] for s in group], target_pads),
                )
                for i in range(n_layers)
            ]
        )
        cross_cache = DynamicCache(
            [
                (
                    _cat_right([s.cross_kv[i][0] for s in group], pads),
                    _cat_right([s.cross_kv[i][1] for s in group], pads),
                )
                for i in range(n_layers)
            ]
        )
        states = _cat_right([s.encoder_states for s in group], pads, dim=1)  # type: ignore[misc]
        mask = torch.ones(len(group), longest, dtype=torch.long, device=self.device)
        for row, pad in enumerate(pads):
            if pad:
                mask[row, -pad:] = 0
        decoder_mask = torch.ones(len(group), max(lengths) + 1, dtype=torch.long, device=self.device)
        for row, pad in enumerate(target_pads):
            decoder_mask[row, :pad] = 0
        ids = torch.tensor([[s.last] for s in group], dtype=torch.long, device=self.device)
        out = self.model(
            encoder_outputs=(states,),
            attention_mask=mask,
            decoder_input_ids=ids,
            decoder_attention_mask=decoder_mask,
            cache=EncoderDecoderCache(self_cache, cross_cache),
            use_cache=True,
        )
        layers = _layers(out.cache.self_attention_cache)
        for row, (s, pad) in enumerate(zip(group, target_pads, strict=True)):
            s.self_kv = [(k[row : row + 1, :, pad:], v[row : row + 1, :, pad:]) for k, v in layers]
        return out.logits[:, -1]


def _by_length(sequences: list[Seq2SeqSequence]) -> list[list[Seq2SeqSequence]]:
    groups: dict[int, list[Seq2SeqSequence]] = {}
    for s in sequences:
        groups.setdefault(s.length, []).append(s)
    return list(groups.values())


def _cat_left(tensors: list[torch.Tensor], pads: list[int]) -> torch.Tensor:
    """Concatenate [1, heads, len, dim] tensors on the batch axis, left-padding ``len`` with zeros."""
    if not any(pads):
        return torch.cat(tensors)
    return torch.cat([F.pad(t, (0, 0, p, 0)) if p else t for t, p in zip(tensors, pads, strict=True)])


def _cat_right(tensors: list[torch.Tensor], pads: list[int], dim: int = 2) -> torch.Tensor:
    """Concatenate on the batch axis, right-padding axis ``dim`` with zeros."""
    if not any(pads):
        return torch.cat(tensors)
    padded = []
    for t, p in zip(tensors, pads, strict=True):
        if p:
            widths = [0, 0] * (t.dim() - 1 - dim) + [0, p]
            t = F.pad(t, widths)
        padded.append(t)
    return torch.cat(padded)

"""Continuous batching of a causal LM over shared, left-padded KV caches.

One :class:`CausalEngine` per instance holds the running sequences: those that have their
prompt in the cache and feed one token per step. They run in one batch (one shared cache,
one forward pass), or in a few *groups* when their lengths differ too much: a row shorter
than its batch's longest is left-padded to it, and the padding costs attention and memory in
every step, so a sequence whose joining would pad the others by more than
``SEPARATE_PASS_PADDING`` row-columns (e.g. a 2,000-token prompt joining 15 short streams)
starts a group of its own, decoded in its own forward pass, rather than widening the batch
(a copy of every row, and every later step attending over the padding). A step:

1. sequences that left (released) or sit this step out (a paused stream) leave their group
   (:meth:`~modelplex_text.kvcache.BatchCache.remove`: the last row moves into its place); a
   paused one keeps its own one-row copy and rejoins when it is stepped again;
2. each group decodes one token for every row, in one forward pass;
3. new prompts are prefilled within a budget of ``chunk_tokens`` columns per step: short
   prompts together (left-padded, one pass), a long one in chunks over several steps, so
   that a long prompt delays the running sequences by at most one chunk per step (while
   nothing runs, a prompt is prefilled whole);
4. prompts that finished prefilling join the group they pad least, or a new one
   (:meth:`~modelplex_text.kvcache.BatchCache.add`: written into free rows).

A forward pass that raises is retried one sequence at a time (the cache is rewound to
before the failed pass), so only the sequences that fail alone get the exception.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from modelplex_text.kvcache import BatchCache, LayerKind, merge
from modelplex_text.prefix import PrefixCache
from modelplex_text.sampling import Sampler

log = logging.getLogger(__name__)

__all__ = ["CausalEngine", "CausalSequence", "Group"]

SEPARATE_PASS_PADDING = 4096
"""A sequence joins a group if that pads it (rows x columns added to the group's rows, or to
its own) by at most this much; else it starts a group of its own, decoded in a pass of its own.
The padding is paid in every later step (attention over it, and the copy that widens the
group when the newcomer is the longest), an extra pass in the weights read once more; on a
CPU a distilgpt2-sized model's weights weigh about as much as a few thousand padded
row-columns of its KV cache."""

MAX_GROUPS = 4
"""At most this many groups (forward passes per decode step); past it a newcomer joins the
group it pads least."""

Row = torch.Tensor | Exception | None
"""A sequence's result of one step: the logits of its next token, its failure, or None
while its prompt is still being prefilled."""


@dataclass(eq=False)
class CausalSequence:
    """One sequence of a causal LM: its prompt, sampler and where its cache is."""

    prompt: list[int]
    sampler: Sampler
    last: int | None = None
    """The token to feed at the next step; None until the prompt is prefilled."""
    length: int = 0
    """Tokens in its cache: the position of the next token fed."""
    own: BatchCache | None = None
    """Its own one-row cache while its prompt is prefilled in chunks, or while it sits out."""
    released: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prefilling(self) -> bool:
        return self.last is None


@dataclass(eq=False)
class Group:
    """Running sequences that share one cache and one forward pass: row ``i`` is ``rows[i]``."""

    rows: list[CausalSequence]
    batch: BatchCache

    def padding(self, cache: BatchCache) -> int:
        """Row-columns of padding that adding ``cache``'s rows would add (to this group's rows
        when they are longer, to theirs when shorter)."""
        width, other = self.batch.width, cache.width
        if other > width:
            return (other - width) * len(self.rows)
        return (width - other) * cache.batch


class CausalEngine:
    """The running sequences of one instance, and the forward passes that advance them."""

    def __init__(
        self,
        model: Any,
        layout: Sequence[LayerKind],
        device: torch.device,
        *,
        chunk_tokens: int,
        prefix_cache: PrefixCache | None = None,
    ) -> None:
        params = inspect.signature(model.forward).parameters
        # A model without position_ids (Bloom: ALiBi from the mask) finds positions itself;
        # the load-time probe checks that batching does not change its logits.
        self._takes_positions = "position_ids" in params
        self._takes_logits_to_keep = "logits_to_keep" in params
        self.model = model
        self.layout = list(layout)
        self.device = device
        self.chunk_tokens = chunk_tokens
        self.prefix_cache = prefix_cache
        self.groups: list[Group] = []
        self.separate_pass_padding = SEPARATE_PASS_PADDING
        self.max_groups = MAX_GROUPS
        self.passes = 0
        """Forward passes run, for tests and statistics."""

    # -- one step ------------------------------------------------------------------------------

    def step(self, sequences: Sequence[CausalSequence]) -> dict[int, Row]:
        """Advance ``sequences`` one step; their rows (keyed by ``id``)."""
        results: dict[int, Row] = {}
        self._sit_out({id(s) for s in sequences})
        back = [s for s in sequences if not s.prefilling and s.own is not None]
        if back:
            self._join(back)
        for group in list(self.groups):
            self._decode(group, results)
        fresh = [s for s in sequences if s.prefilling]
        if fresh:
            self._join(self._prefill(fresh, results))
        return results

    def prefill(self, sequences: Sequence[CausalSequence]) -> dict[int, Row]:
        """Run the prompts of new sequences within this step's budget, leaving the running
        ones where they are; those whose prompt is all in then join a group."""
        results: dict[int, Row] = {}
        self._join(self._prefill([s for s in sequences if s.prefilling], results))
        return results

    def release(self, sequence: CausalSequence) -> None:
        """Free a sequence's cache: its own now, its batch row at the next step."""
        sequence.released = True
        sequence.own = None

    def clear(self) -> None:
        """Drop every group (unload)."""
        self.groups = []

    @property
    def rows(self) -> list[CausalSequence]:
        """The running sequences, over all groups."""
        return [s for g in self.groups for s in g.rows]

    def _sit_out(self, wanted: set[int]) -> None:
        """Rows not stepped now leave their group: released ones for good, the others with their
        own copy of their row. (A row leaves by the last moving into its place.)"""
        for group in self.groups:
            if all(id(r) in wanted for r in group.rows):
                continue
            rows = group.rows
            for i in reversed(range(len(rows))):
                r = rows[i]
                if id(r) in wanted:
                    continue
                if not r.released:
                    r.own = group.batch.row(i)
                group.batch.remove(i)
                rows[i] = rows[-1]
                rows.pop()
        self.groups = [g for g in self.groups if g.rows]

    def _join(self, sequences: Sequence[CausalSequence]) -> None:
        """Each sequence's own cache joins the group it pads least, or starts a group."""
        for s in sequences:
            cache, s.own = s.own, None
            if cache is None or s.released:
                continue
            best = min(self.groups, key=lambda g: g.padding(cache), default=None)
            if best is None or (
                best.padding(cache) > self.separate_pass_padding and len(self.groups) < self.max_groups
            ):
                self.groups.append(Group([s], cache))
                continue
            best.batch = merge([best.batch, cache])
            best.rows.append(s)

    # -- decoding ------------------------------------------------------------------------------

    def _decode(self, group: Group, results: dict[int, Row]) -> None:
        try:
            logits = self._decode_pass(group.batch, group.rows)
        except Exception as e:
            if len(group.rows) > 1:
                log.warning("a batched decode pass failed: retrying its %d sequences one by one", len(group.rows))
                self._decode_one_by_one(group, results)
                return
            log.exception("a sequence failed its decode step")
            results[id(group.rows[0])] = e
            self.groups.remove(group)
            return
        for s, row in zip(group.rows, logits, strict=True):
            s.length += 1
            results[id(s)] = row

    def _decode_pass(self, cache: BatchCache, rows: Sequence[CausalSequence]) -> torch.Tensor:
        ids = torch.tensor([[s.last] for s in rows], dtype=torch.long, device=self.device)
        positions = torch.tensor([[s.length] for s in rows], dtype=torch.long, device=self.device)
        mask = cache.extend_mask(torch.ones(len(rows), 1, dtype=torch.long, device=self.device))
        return self._forward(cache, ids, mask, positions)

    def _decode_one_by_one(self, group: Group, results: dict[int, Row]) -> None:
        survivors: list[tuple[CausalSequence, BatchCache]] = []
        for i, s in enumerate(group.rows):
            alone = group.batch.row(i)
            try:
                (row,) = self._decode_pass(alone, [s])
            except Exception as e:
                log.exception("a sequence failed its decode step")
                results[id(s)] = e
                continue
            s.length += 1
            results[id(s)] = row
            survivors.append((s, alone))
        if survivors:
            group.rows = [s for s, _ in survivors]
            group.batch = merge([c for _, c in survivors])
        else:
            self.groups.remove(group)

    # -- prefilling ----------------------------------------------------------------------------

    def _prefill(self, fresh: Sequence[CausalSequence], results: dict[int, Row]) -> list[CausalSequence]:
        """Prefill within this step's budget; the sequences whose prompt is now all in their cache."""
        idle = not self.groups
        budget = max((len(s.prompt) for s in fresh), default=0) * len(fresh) if idle else self.chunk_tokens
        started = [s for s in fresh if s.own is not None]  # chunked prefills under way (or prefix hits)
        new = [s for s in fresh if s.own is None]
        if self.prefix_cache is not None:
            for s in new:
                hit = self.prefix_cache.lookup(s.prompt)
                if hit is not None:
                    s.own, s.length = hit
            started = [s for s in fresh if s.own is not None]
            new = [s for s in fresh if s.own is None]
        # Short new prompts go first, together: their first tokens come soon. The group's cost is
        # its padded size; a prefill under way keeps at least half the budget.
        group: list[CausalSequence] = []
        share = budget // 2 if started and not idle else budget
        for s in new:
            if self.prefix_cache is not None and self.prefix_cache.boundary(len(s.prompt)):
                continue  # prefilled in two parts, to keep its prefix's cache
            width = max([len(s.prompt), *(len(g.prompt) for g in group)])
            if width * (len(group) + 1) <= share:
                group.append(s)
        used = max((len(g.prompt) for g in group), default=0) * len(group)
        ready: list[CausalSequence] = []
        if group:
            ready.extend(self._prefill_group(group, results))
        budget -= used
        for s in [*started, *(s for s in new if s not in group)]:
            if budget <= 0:
                results[id(s)] = None
                continue
            n = self._chunk(s, budget)
            budget -= n
            if self._prefill_chunk(s, n, results):
                ready.append(s)
        return ready

    def _chunk(self, s: CausalSequence, budget: int) -> int:
        """How many prompt tokens of ``s`` to prefill now: up to ``budget``; with prefix caching,
        ending on a block boundary (so the prefix can be kept) where the prompt goes past one."""
        start, end = s.length, min(len(s.prompt), s.length + budget)
        cache = self.prefix_cache
        if cache is not None:
            # The last block boundary before ``end`` (and before the prompt's last token).
            aligned = min(end // cache.block * cache.block, cache.boundary(len(s.prompt)))
            if aligned > start:
                end = aligned
        return end - start

    def _prefill_group(self, group: list[CausalSequence], results: dict[int, Row]) -> list[CausalSequence]:
        """New prompts in one left-padded pass; each alone if the pass fails."""
        if len(group) == 1:
            return [group[0]] if self._prefill_chunk(group[0], len(group[0].prompt), results) else []
        lengths = [len(s.prompt) for s in group]
        width = max(lengths)
        ids = torch.zeros(len(group), width, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(group), width, dtype=torch.long, device=self.device)
        positions = torch.zeros(len(group), width, dtype=torch.long, device=self.device)
        for row, (s, n) in enumerate(zip(group, lengths, strict=True)):
            ids[row, width - n :] = torch.tensor(s.prompt, dtype=torch.long)
            mask[row, width - n :] = 1
            positions[row, width - n :] = torch.arange(n)
        cache = BatchCache(self.layout, self.device)
        try:
            logits = self._forward(cache, ids, cache.extend_mask(mask), positions)
        except Exception:
            log.warning("a batched prefill failed: prefilling its %d prompts one by one", len(group))
            return [s for s in group if self._prefill_chunk(s, len(s.prompt), results)]
        for row, s in enumerate(group):
            s.own = cache.row(row)
            s.length = lengths[row]
            results[id(s)] = logits[row]
        return group

    def _prefill_chunk(self, s: CausalSequence, n: int, results: dict[int, Row]) -> bool:
        """The next ``n`` prompt tokens of ``s`` into its own cache; True once its prompt is all in."""
        cache = s.own if s.own is not None else BatchCache(self.layout, self.device)
        start = s.length
        ids = torch.tensor([s.prompt[start : start + n]], dtype=torch.long, device=self.device)
        positions = torch.arange(start, start + n, device=self.device).unsqueeze(0)
        try:
            mask = cache.extend_mask(torch.ones(1, n, dtype=torch.long, device=self.device))
            (row,) = self._forward(cache, ids, mask, positions)
        except Exception as e:
            log.exception("a prompt failed to prefill")
            s.own = None
            results[id(s)] = e
            return False
        s.own, s.length = cache, start + n
        if self.prefix_cache is not None:
            self.prefix_cache.store(s.prompt[: s.length], cache)
        if s.length < len(s.prompt):
            results[id(s)] = None
            return False
        results[id(s)] = row
        return True

    def _forward(
        self, cache: BatchCache, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """One forward pass writing ``ids``' columns into ``cache``; the last position's logits
        per row. The cache's mask was extended to cover them; on failure it is rewound."""
        mark = cache.mark(width=cache.width - ids.shape[1])
        self.passes += 1
        extra: dict[str, Any] = {}
        if self._takes_positions:
            extra["position_ids"] = positions
        if self._takes_logits_to_keep:
            extra["logits_to_keep"] = 1
        try:
            out = self.model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True, **extra)
        except Exception:
            cache.rewind(mark)
            raise
        return out.logits[:, -1]

"""A batched, right-aligned KV cache for continuous batching of causal LMs.

The running sequences of an instance share one cache: row ``i`` of every layer is sequence
``i``'s keys and values, right-aligned on a shared *physical* time axis of ``T`` columns (a
sequence shorter than the longest is left-padded with zeros, and the padding is masked out
by the 2-D attention mask). Each layer's rows and columns live in a preallocated
``[rows, heads, columns, dim]`` buffer, of which the columns ``[lo, hi)`` of the first
``batch`` rows are live:

* a decode step writes one column for every row in place (the buffers grow by doubling, so
  no step re-concatenates the cache as transformers' ``DynamicLayer`` does, ``torch.cat``
  per layer per step);
* a sequence leaves by moving the last row into its place (one row copied, not the batch),
  and the padding columns every row has at the left are dropped by moving ``lo``;
* a sequence joins by writing its rows into free rows (the batch's columns are moved only
  when the newcomer is longer than all).

Each layer keeps the semantics of the transformers layer it replaces, which is what its
model's mask functions read (``get_mask_sizes``, ``get_seq_length``): full attention
(:class:`FullLayer`, like ``DynamicLayer``) holds every column; a sliding window
(:class:`SlidingLayer`, like ``DynamicSlidingWindowLayer``) the last ``window - 1`` and
the count of columns seen. Left padding keeps each sequence's attention exact: the causal
and sliding-window masks compare physical positions, which differ from a sequence's own by
the same shift for a query and its keys, and each sequence gets its own position ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

__all__ = ["BatchCache", "FullLayer", "LayerKind", "SlidingLayer", "cache_layout"]

_MIN_COLUMNS = 64


class _Buffer:
    """Rows ``[0, rows)`` and columns ``[lo, hi)`` of a key and a value buffer."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.lo = 0
        self.hi = 0

    @property
    def span(self) -> int:
        return self.hi - self.lo

    def view(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.k is not None and self.v is not None
        return self.k[:rows, :, self.lo : self.hi], self.v[:rows, :, self.lo : self.hi]

    def reserve(self, rows: int, live: int, extra: int, like_k: torch.Tensor, like_v: torch.Tensor) -> None:
        """Room for ``rows`` rows and ``extra`` more columns after ``hi``: a new buffer (the
        ``live`` rows' columns copied to its front) if there is not. The old buffers are left as
        they were, so a mark taken before still holds (see :meth:`BatchCache.mark`)."""
        if self.k is not None and self.k.shape[0] >= rows and self.hi + extra <= self.k.shape[2]:
            return
        k, v = _empty(max(rows, _rows(self.k)), _grown(self.span + extra), like_k, like_v)
        if self.k is not None and self.v is not None and live and self.span:
            k[:live, :, : self.span] = self.k[:live, :, self.lo : self.hi]
            v[:live, :, : self.span] = self.v[:live, :, self.lo : self.hi]
        self.k, self.v, self.lo, self.hi = k, v, 0, self.span

    def write(self, rows: int, k: torch.Tensor, v: torch.Tensor) -> None:
        assert self.k is not None and self.v is not None
        n = k.shape[-2]
        self.k[:rows, :, self.hi : self.hi + n] = k
        self.v[:rows, :, self.hi : self.hi + n] = v
        self.hi += n

    def widen(self, live: int, span: int, rows: int, like: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Make the span ``span`` columns (the live rows' content right-aligned, zeros before it)
        with room for ``rows`` rows."""
        if span <= self.span and self.k is not None and self.k.shape[0] >= rows:
            return
        target = max(span, self.span)
        k, v = _empty(max(rows, _rows(self.k)), _grown(target), *like)
        if self.k is not None and self.v is not None and live:
            n = self.span
            k[:live, :, : target - n] = 0  # the padding: masked, but it must not be NaN
            v[:live, :, : target - n] = 0
            k[:live, :, target - n : target] = self.k[:live, :, self.lo : self.hi]
            v[:live, :, target - n : target] = self.v[:live, :, self.lo : self.hi]
        self.k, self.v, self.lo, self.hi = k, v, 0, target

    def put_rows(self, at: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Rows ``at ..`` := ``k``/``v``, right-aligned, zeros before them."""
        assert self.k is not None and self.v is not None
        b, n = k.shape[0], k.shape[2]
        self.k[at : at + b, :, self.lo : self.hi - n] = 0
        self.v[at : at + b, :, self.lo : self.hi - n] = 0
        self.k[at : at + b, :, self.hi - n : self.hi] = k
        self.v[at : at + b, :, self.hi - n : self.hi] = v

    def move_row(self, src: int, dst: int) -> None:
        assert self.k is not None and self.v is not None
        self.k[dst, :, self.lo : self.hi] = self.k[src, :, self.lo : self.hi]
        self.v[dst, :, self.lo : self.hi] = self.v[src, :, self.lo : self.hi]

    def state(self) -> tuple[Any, ...]:
        return (self.k, self.v, self.lo, self.hi)

    def restore(self, state: tuple[Any, ...]) -> None:
        self.k, self.v, self.lo, self.hi = state


def _rows(buffer: torch.Tensor | None) -> int:
    return buffer.shape[0] if buffer is not None else 0


def _grown(columns: int) -> int:
    """A buffer's columns for ``columns`` in use: a quarter more (at least 64), so that growing
    by one column a step reallocates rarely, without doubling a long batch's memory."""
    return columns + max(_MIN_COLUMNS, columns // 4)


def _empty(rows: int, columns: int, like_k: torch.Tensor, like_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Uninitialised buffers: every column is written (or zeroed, for padding) before it is read."""
    k = like_k.new_empty(rows, like_k.shape[1], columns, like_k.shape[3])
    v = like_v.new_empty(rows, like_v.shape[1], columns, like_v.shape[3])
    return k, v


class FullLayer(DynamicLayer):
    """A full-attention layer over a :class:`_Buffer`: ``keys``/``values`` are views."""

    def __init__(self) -> None:
        super().__init__()
        self.buf = _Buffer()

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        rows = key_states.shape[0]
        self.buf.reserve(rows, rows, key_states.shape[-2], key_states, value_states)
        self.buf.write(rows, key_states, value_states)
        self.keys, self.values = self.buf.view(rows)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.buf.span

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.buf.span + query_length, 0

    def span_for(self, width: int) -> int:
        """Columns this layer holds for a ``width``-column batch."""
        return width

    def set_width(self, width: int) -> None:
        """The batch dropped columns at the left: keep the last ``width``."""
        self.buf.lo = self.buf.hi - width


class SlidingLayer(DynamicSlidingWindowLayer):
    """A sliding-window layer over a :class:`_Buffer`: the last ``window - 1`` columns."""

    def __init__(self, sliding_window: int) -> None:
        super().__init__(sliding_window=sliding_window)
        self.buf = _Buffer()

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        rows = key_states.shape[0]
        self.buf.reserve(rows, rows, key_states.shape[-2], key_states, value_states)
        self.buf.write(rows, key_states, value_states)
        self.cumulative_length += key_states.shape[-2]
        # The window before this update and the new columns, as DynamicSlidingWindowLayer returns;
        # then only the last window - 1 are kept.
        full = self.buf.view(rows)
        self.buf.lo = max(self.buf.lo, self.buf.hi - (self.sliding_window - 1))
        self.keys, self.values = self.buf.view(rows)
        return full

    def span_for(self, width: int) -> int:
        return min(width, self.sliding_window - 1)

    def set_width(self, width: int) -> None:
        self.cumulative_length = width
        self.buf.lo = max(self.buf.lo, self.buf.hi - self.span_for(width))


@dataclass(frozen=True)
class LayerKind:
    """One decoder layer's cache: full attention (``window`` None) or a sliding window."""

    window: int | None


def cache_layout(config: Any) -> list[LayerKind]:
    """The cache layout of a causal LM's config; ValueError naming what is not attention with a
    plain or sliding-window KV cache (recurrent state, chunked attention, shared KV layers)."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    types, kwargs = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    unsupported = sorted({t for t in types if t not in ("full_attention", "sliding_attention")})
    if unsupported:
        raise ValueError(", ".join(unsupported))
    windows = [
        kw.get("sliding_window") if t == "sliding_attention" else None for t, kw in zip(types, kwargs, strict=True)
    ]
    return [LayerKind(w) for w in windows]


class BatchCache(DynamicCache):
    """The cache of ``batch`` sequences, ``width`` physical columns long, with its padding mask."""

    def __init__(self, layout: Sequence[LayerKind], device: torch.device) -> None:
        self.kv: list[FullLayer | SlidingLayer] = [
            FullLayer() if k.window is None else SlidingLayer(k.window) for k in layout
        ]
        super(DynamicCache, self).__init__(layers=list(self.kv))
        self.layout = list(layout)
        self.device = device
        self.batch = 0
        self._mask = torch.zeros(0, _MIN_COLUMNS, dtype=torch.long, device=device)
        self._mlo = 0
        self._mhi = 0

    @property
    def width(self) -> int:
        """``T``: the columns of the attention mask."""
        return self._mhi - self._mlo

    @property
    def mask(self) -> torch.Tensor:
        """``[batch, T]``: 1 where a column holds a real token of the row's sequence."""
        return self._mask[: self.batch, self._mlo : self._mhi]

    def _mask_room(self, rows: int, columns: int) -> None:
        if self._mask.shape[0] >= rows and self._mhi + columns <= self._mask.shape[1]:
            return
        grown = torch.zeros(
            max(rows, self._mask.shape[0]), max(_MIN_COLUMNS, 2 * (self.width + columns)), dtype=torch.long
        ).to(self.device)
        grown[: self.batch, : self.width] = self.mask
        self._mask, self._mlo, self._mhi = grown, 0, self.width

    def extend_mask(self, new: torch.Tensor) -> torch.Tensor:
        """Append ``new`` (``[rows, n]``: a new cache takes its rows from it) to the mask; return the
        mask over ``T + n`` columns, to pass with the forward pass that writes those columns."""
        rows, n = new.shape
        self._mask_room(rows, n)
        if self.batch == 0:
            self.batch = rows
        self._mask[:rows, self._mhi : self._mhi + n] = new
        self._mhi += n
        return self.mask

    def mark(self, width: int | None = None) -> tuple[Any, ...]:
        """Where the cache is now (its mask ``width`` columns wide, if given), to :meth:`rewind`
        to if a forward pass fails half-way. (Growing allocates new buffers and writes land past
        the live columns, so the marked ones are intact.)"""
        mhi = self._mhi if width is None else self._mlo + width
        layers = [(layer.buf.state(), getattr(layer, "cumulative_length", 0)) for layer in self.kv]
        return (self._mask, self._mlo, mhi, self.batch, layers)

    def rewind(self, mark: tuple[Any, ...]) -> None:
        self._mask, self._mlo, self._mhi, self.batch, layers = mark
        for layer, (state, total) in zip(self.kv, layers, strict=True):
            layer.buf.restore(state)
            if isinstance(layer, SlidingLayer):
                layer.cumulative_length = total

    # -- rows joining and leaving (between steps) -----------------------------------------------

    def add(self, other: BatchCache) -> None:
        """Append ``other``'s rows, right-aligned on the wider of the two."""
        width = max(self.width, other.width)
        rows = self.batch + other.batch
        for mine, theirs in zip(self.kv, other.kv, strict=True):
            like = theirs.buf.view(other.batch)
            mine.buf.widen(self.batch, mine.span_for(width), rows, like)
            mine.buf.put_rows(self.batch, *like)
            if isinstance(mine, SlidingLayer):
                mine.cumulative_length = width
            mine.is_initialized, mine.device = True, self.device
        grow = width - self.width
        if grow > 0 or self._mask.shape[0] < rows:
            old = self.mask
            self._mask = torch.zeros(max(rows, 2 * self.batch), max(_MIN_COLUMNS, 2 * width), dtype=torch.long)
            self._mask = self._mask.to(self.device)
            self._mask[: self.batch, width - old.shape[1] : width] = old
            self._mlo, self._mhi = 0, width
        self._mask[self.batch : rows, self._mlo : self._mhi] = 0
        self._mask[self.batch : rows, self._mhi - other.width : self._mhi] = other.mask
        self.batch = rows

    def remove(self, row: int) -> None:
        """Drop ``row``: the last row moves into its place (the caller's list of rows must do the
        same); then the padding columns every row has at the left are dropped."""
        last = self.batch - 1
        if row != last:
            for layer in self.kv:
                layer.buf.move_row(last, row)
            self._mask[row, self._mlo : self._mhi] = self._mask[last, self._mlo : self._mhi]
        self.batch = last
        self._trim()

    def _trim(self) -> None:
        if self.batch == 0:
            self._mlo = self._mhi
        else:
            real = int(self.mask.sum(dim=1).max())
            self._mlo = self._mhi - real
        for layer in self.kv:
            if layer.buf.k is not None:
                layer.set_width(self.width)

    def row(self, row: int) -> BatchCache:
        """A one-row copy of ``row``, without the padding at its left."""
        out = BatchCache(self.layout, self.device)
        out.extend_mask(self.mask[row : row + 1].clone())
        for src, dst in zip(self.kv, out.kv, strict=True):
            if src.buf.k is None:
                continue
            k, v = src.buf.view(self.batch)
            dst.buf.reserve(1, 0, k.shape[2], k, v)
            dst.buf.write(1, k[row : row + 1], v[row : row + 1])
            dst.is_initialized, dst.device = True, self.device
            if isinstance(dst, SlidingLayer):
                dst.cumulative_length = self.width
        out._trim()
        return out


def merge(caches: Sequence[BatchCache]) -> BatchCache:
    """The rows of ``caches`` in order, in the first (the others appended to it)."""
    first = caches[0]
    for other in caches[1:]:
        first.add(other)
    return first

"""Prefix caching: the KV cache of prompt beginnings that many requests share.

Chat requests to one model usually start with the same system prompt (and a
conversation's next turn with the whole previous one). When a prompt's prefill
reaches a multiple of ``block`` tokens, its one-row cache at that point is kept (a
copy), keyed by those tokens; a later prompt that starts with them copies the cache
and prefills only the rest. The copies are kept least-recently-used first out, up to
``capacity`` tokens in all.

A cache restored from a prefix holds exactly what prefilling those tokens would
(the same columns, the same sliding windows), so a prompt's tokens do not depend on
whether its prefix was cached, up to the rounding of a split prefill.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from modelplex_text.kvcache import BatchCache

__all__ = ["PrefixCache"]


class PrefixCache:
    """Copies of one-row caches of prompt prefixes, by their tokens, least recently used out."""

    def __init__(self, block: int, capacity: int) -> None:
        self.block = block
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, ...], BatchCache] = OrderedDict()
        self._tokens = 0
        self._lock = threading.Lock()  # instances of one model each have their own; this guards stats readers
        self.hits = 0
        self.hit_tokens = 0

    @property
    def tokens(self) -> int:
        """Tokens held, over all entries."""
        return self._tokens

    def boundary(self, prompt_length: int) -> int:
        """The longest prefix worth keeping for a prompt: a multiple of ``block`` that leaves at
        least one token to prefill (its logits give the first token); 0 for none."""
        return ((prompt_length - 1) // self.block) * self.block

    def lookup(self, prompt: Sequence[int]) -> tuple[BatchCache, int] | None:
        """A copy of the cache of the longest kept prefix of ``prompt`` (leaving a token to
        prefill), and its length; None without one."""
        with self._lock:
            for n in range(self.boundary(len(prompt)), 0, -self.block):
                key = tuple(prompt[:n])
                cache = self._entries.get(key)
                if cache is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    self.hit_tokens += n
                    return cache.row(0), n
        return None

    def store(self, tokens: Sequence[int], cache: BatchCache) -> None:
        """Keep a copy of ``cache`` (one row, holding exactly ``tokens``) if ``tokens`` ends on a
        block boundary and is not kept yet."""
        n = len(tokens)
        if n == 0 or n % self.block or n > self.capacity:
            return
        key = tuple(tokens)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return
        copy = cache.row(0)
        with self._lock:
            self._entries[key] = copy
            self._tokens += n
            while self._tokens > self.capacity:
                old, _ = self._entries.popitem(last=False)
                self._tokens -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._tokens = 0

"""Turning a sequence's tokens into text deltas: incremental detokenization and stop sequences.

Pure logic over a ``detokenize`` function, run on the instance's thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

__all__ = ["IncrementalDetokenizer", "StopMatcher"]

_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """The text each new token adds, never splitting a multi-byte character.

    Decoding tokens one by one is wrong for most tokenizers (byte-level BPE emits
    a character's bytes as separate tokens; SentencePiece drops a leading space
    when a piece is decoded alone), so each delta is the difference between the
    decoding of a short window of recent tokens with and without the new ones
    (the scheme of TGI and vLLM). A delta ending in U+FFFD is held back until
    the character's remaining bytes arrive.
    """

    def __init__(self, detokenize: Callable[[Sequence[int]], str]) -> None:
        self._detokenize = detokenize
        self._ids: list[int] = []
        self._prefix = 0  # start of the window decoded for context
        self._read = 0  # tokens up to here have been turned into text

    def add(self, token_id: int) -> str:
        """Append a token; return the text it completes (often empty)."""
        self._ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """At the end: whatever is still held back, U+FFFD included."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        before = self._detokenize(self._ids[self._prefix : self._read])
        after = self._detokenize(self._ids[self._prefix :])
        if not final and (len(after) <= len(before) or after.endswith(_REPLACEMENT)):
            return ""
        # A window's decoding normally extends the shorter one; if a tokenizer
        # rewrites earlier text, emit only what is new past its common prefix.
        delta = (
            after[len(before) :] if after.startswith(before) else after[len(os.path.commonprefix([before, after])) :]
        )
        self._prefix, self._read = self._read, len(self._ids)
        return delta


class StopMatcher:
    """Holds back text that may be the start of a stop sequence; finds the stop
    sequence even when it spans tokens, and never lets it out."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self.matched: str | None = None
        """The stop sequence found, once one is."""

    def feed(self, text: str) -> str:
        """Add decoded text; return what may be emitted. After a match, return
        the text before the stop sequence and set :attr:`matched`."""
        if not self._stops:
            return text
        buf = self._held + text
        first: tuple[int, str] | None = None
        for stop in self._stops:
            i = buf.find(stop)
            if i >= 0 and (first is None or i < first[0]):
                first = (i, stop)
        if first is not None:
            self._held = ""
            self.matched = first[1]
            return buf[: first[0]]
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """At the end without a match: the held-back text is ordinary text."""
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of a stop sequence."""
        for n in range(min(len(buf), self._longest - 1), 0, -1):
            tail = buf[-n:]
            if any(s.startswith(tail) for s in self._stops):
                return n
        return 0

"""Splitting a request's text into the sentences (and clauses) that are synthesized one by one.

Each piece keeps its span in the original text (Unicode code points), which the stream
reports with the audio that voices it. Normalisation (numbers, abbreviations, accents)
is the model's work (:meth:`SpeechSynthesizer.prepare`): the splitter only has to avoid
cutting after the period of an initial or a title, so it needs no language library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Segment", "split_text"]

# A sentence ends at . ! ? or … (repeated, e.g. "?!"), with closing quotes or brackets after
# it, followed by whitespace or the end of the text; a line break always ends one.
_END = re.compile(r"[.!?\u2026]+[\"'\u2019\u201d)\]]*(?=\s|$)|\n")
# Periods that usually do not end a sentence: after an initial ("J. Smith", "U.S.") or
# a title or Latin abbreviation. (Only for splitting; the model spells them out.)
_NOT_AN_END = re.compile(
    r"(?:\b[A-Za-z]|\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|vs|etc|e\.g|i\.e|No|Gen|Col|Lt|Sgt|Capt|Rev|Hon))\.$"
)
# Where a long sentence may be cut, best first: after clause punctuation, then after a space.
_CLAUSE = re.compile(r"[,;:\u2013\u2014)](?=\s)|\s-{1,2}\s")
_SPACE = re.compile(r"\s")


@dataclass(frozen=True, slots=True)
class Segment:
    """A sentence or clause: ``text == source[start:end]``."""

    start: int
    end: int
    text: str


def split_text(text: str, max_chars: int) -> list[Segment]:
    """The sentences of ``text`` in order, whitespace trimmed, each at most ``max_chars``
    characters long (longer ones cut at clause boundaries, else between words, else hard)."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    segments: list[Segment] = []
    start = 0
    for match in _END.finditer(text):
        end = match.end()
        if match.group() != "\n" and _NOT_AN_END.search(text[start:end]):
            continue
        segments.extend(_clauses(text, start, end, max_chars))
        start = end
    segments.extend(_clauses(text, start, len(text), max_chars))
    return segments


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _clauses(text: str, start: int, end: int, max_chars: int) -> list[Segment]:
    """The trimmed span [start, end) as one segment, or cut into pieces of at most max_chars."""
    out: list[Segment] = []
    start, end = _trimmed(text, start, end)
    while start < end:
        if end - start <= max_chars:
            out.append(Segment(start, end, text[start:end]))
            break
        window = text[start : start + max_chars + 1]
        cut = _last_cut(_CLAUSE, window, max_chars) or _last_cut(_SPACE, window, max_chars) or max_chars
        piece_end = start + cut
        s, e = _trimmed(text, start, piece_end)
        if s < e:
            out.append(Segment(s, e, text[s:e]))
        start, end = _trimmed(text, piece_end, end)
    return out


def _last_cut(pattern: re.Pattern[str], window: str, limit: int) -> int:
    """The last place in ``window`` where ``pattern`` allows a cut, at most ``limit`` (0 if none):
    after clause punctuation, before a space."""
    cuts = [m.start() if m.group().isspace() else m.end() for m in pattern.finditer(window)]
    return max((c for c in cuts if 0 < c <= limit), default=0)

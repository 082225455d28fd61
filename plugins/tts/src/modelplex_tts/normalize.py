"""English text normalisation for Tacotron 2: what the model should say for what is written.

Numbers, amounts, ordinals, percentages and years are spelled out with num2words;
accented letters and other scripts are transliterated with unidecode; a few symbols and
the title abbreviations of keithito's ``english_cleaners`` (the cleaner the LJSpeech
Tacotron 2 models were trained behind) are expanded. Every character of the input is
accounted for: kept as is, *normalised* (rewritten into something the model voices), or
*dropped* (nothing the model can voice: emoji, most symbols).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from num2words import num2words
from unidecode import unidecode

__all__ = ["Normalized", "normalize"]

_CURRENCIES = {"$": "USD", "£": "GBP", "€": "EUR"}
# The abbreviations of keithito/tacotron's english_cleaners (LJSpeech's training text).
_ABBREVIATIONS = {
    "mrs": "misess",
    "mr": "mister",
    "dr": "doctor",
    "st": "saint",
    "co": "company",
    "jr": "junior",
    "maj": "major",
    "gen": "general",
    "drs": "doctors",
    "rev": "reverend",
    "lt": "lieutenant",
    "hon": "honorable",
    "sgt": "sergeant",
    "capt": "captain",
    "esq": "esquire",
    "ltd": "limited",
    "col": "colonel",
    "ft": "fort",
}
_SYMBOLS = {"&": " and ", "%": " percent", "+": " plus ", "=": " equals ", "@": " at ", "#": " number "}

_TOKEN = re.compile(
    r"(?P<money>[$£€]\s?\d[\d,]*(?:\.\d+)?)"
    r"|(?P<ordinal>\b\d+(?:st|nd|rd|th)\b)"
    r"|(?P<percent>\d[\d,]*(?:\.\d+)?\s?%)"
    r"|(?P<year>\b(?:1[1-9]|20)\d\d\b(?![.,]\d))"
    r"|(?P<number>\d[\d,]*(?:\.\d+)?)"
    r"|(?P<abbrev>\b(?:" + "|".join(_ABBREVIATIONS) + r")\.)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Normalized:
    """A sentence as the model should read it, and what normalising it changed."""

    text: str
    normalized: int
    """Characters of the input rewritten (spelled out, transliterated, expanded)."""
    dropped: int
    """Characters of the input with nothing the model can voice."""
    dropped_chars: str
    """The distinct dropped characters, in order of first appearance."""


def _number(text: str) -> str:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return text
    return num2words(value if value != value.to_integral_value() else int(value))


def _spoken(kind: str, text: str) -> str:
    """The words for one matched token."""
    if kind == "money":
        amount = Decimal(text[1:].strip().replace(",", ""))
        words = num2words(amount, to="currency", currency=_CURRENCIES[text[0]])
        return re.sub(r", zero \w+$", "", words) if amount == amount.to_integral_value() else words
    if kind == "ordinal":
        return num2words(int(text[:-2]), to="ordinal")
    if kind == "percent":
        return _number(text.rstrip("%").strip()) + " percent"
    if kind == "year":
        return num2words(int(text), to="year")
    if kind == "number":
        return _number(text)
    return _ABBREVIATIONS[text[:-1].lower()]


def normalize(text: str, voiced: Callable[[str], bool]) -> Normalized:
    """``text`` rewritten into characters for which ``voiced(c)`` is true (and spaces).

    ``voiced`` is the model's symbol set (case as the model wants it: a lowercasing
    processor answers for both cases)."""
    out: list[str] = []
    normalized = dropped = 0
    dropped_chars: dict[str, None] = {}
    pos = 0

    def plain(chunk: str) -> None:
        nonlocal normalized, dropped
        for c in chunk:
            if c.isspace():
                out.append(" ")
            elif voiced(c):
                out.append(c)
            elif c in _SYMBOLS:
                out.append(_SYMBOLS[c])
                normalized += 1
            else:
                spelled = "".join(x for x in unidecode(c) if voiced(x) or x == " ")
                if spelled.strip():
                    out.append(spelled)
                    normalized += 1
                else:
                    dropped += 1
                    dropped_chars[c] = None

    for match in _TOKEN.finditer(text):
        plain(text[pos : match.start()])
        kind = match.lastgroup or "number"
        out.append(_spoken(kind, match.group()))
        normalized += len(match.group())
        pos = match.end()
    plain(text[pos:])
    spoken = re.sub(r" {2,}", " ", "".join(out)).strip()
    # Symbols expanded to words may bring characters the model lacks (none of these do
    # for English symbol sets); keep only what it voices.
    spoken = "".join(c for c in spoken if c == " " or voiced(c))
    return Normalized(spoken, normalized, dropped, "".join(dropped_chars))

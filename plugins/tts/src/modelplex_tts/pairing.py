"""What a served model pairs: plain data, so that registration imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Pairing"]


@dataclass(frozen=True)
class Pairing:
    """A served model: which vocoder follows Tacotron 2."""

    name: str
    vocoder: str
    """``"griffin-lim"``, ``"wavernn"`` or ``"waveglow"``."""
    title: str

"""Where a stream's segments end: at the end of speech, at the maximum length, at the end.

A :class:`Segmenter` reads the speech probability of each VAD frame, in order, and says
where each segment with speech ends. Until speech starts, the open segment's start follows
the stream (keeping ``pad`` samples before the speech); once it started, the segment ends
after ``min_silence`` samples below the lower threshold (cut ``pad`` samples into the
silence), or at ``max_length``. Positions are model-rate sample indices of the stream,
rounded down to whole model frames (``align``) so that windows start on frame boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Segmenter", "SegmentPolicy"]


@dataclass(frozen=True)
class SegmentPolicy:
    """The thresholds, in samples at the model's rate."""

    min_silence: int
    pad: int
    max_length: int
    align: int = 1
    threshold: float = 0.5
    """A frame at or above this starts (or continues) speech."""
    release: float = 0.35
    """A frame below this counts as silence."""


class Segmenter:
    """The segmentation state of one stream."""

    def __init__(self, policy: SegmentPolicy) -> None:
        self.policy = policy
        self.start = 0
        """Where the open segment starts."""
        self.speech = False
        """Whether the open segment has speech (then its start is fixed)."""
        self._active = False
        self._silence: int | None = None

    def _align(self, pos: int) -> int:
        return max(0, pos - pos % self.policy.align)

    def feed(self, start: int, end: int, prob: float) -> tuple[int, int] | None:
        """One VAD frame covering ``start``..``end`` with speech probability ``prob``: the span
        of the open segment when it ends with this frame (the next one starts there), else None."""
        p = self.policy
        if not self._active:
            if prob >= p.threshold:
                self._active = self.speech = True
                self._silence = None
            elif not self.speech:
                self.start = max(self.start, self._align(end - p.pad))
                return None
        elif prob < p.release:
            if self._silence is None:
                self._silence = start
            if end - self._silence >= p.min_silence:
                return self._cut(self._align(min(self._silence + p.pad, end)), speech_goes_on=False)
        elif prob >= p.threshold:
            self._silence = None
        if self.speech and end - self.start >= p.max_length:
            return self._cut(self._align(end), speech_goes_on=self._active)
        return None

    def _cut(self, at: int, *, speech_goes_on: bool) -> tuple[int, int]:
        begin = self.start
        at = max(at, begin + self.policy.align)
        self.start = at
        self.speech = self._active = speech_goes_on
        self._silence = None
        return begin, at

"""Speaking rate: a sentence's mel spectrogram resampled along time before the vocoder.

Every vocoder here turns each mel frame into ``hop_length`` samples and takes the pitch
from what a frame holds, not from how many frames there are; so speech at rate ``r`` is
the mel with ``1 / r`` as many frames, each interpolated from the decoded ones, vocoded
as usual. Output frame ``j`` reads the decoded frames around

    p(j) = (j + 1/2) * r - 1/2

(frame centres aligned, ``align_corners=False`` in ``torch.nn.functional.interpolate``'s
terms), linearly between ``floor(p)`` and the next frame, clamped to the sentence's first
and last frames. ``p(j)`` depends on ``j`` and ``r`` only, not on the sentence's length,
so a frame is the same whichever piece of the sentence computes it: pieces can be
stretched one window at a time while the sentence is still decoding. A sentence of ``T``
decoded frames has :meth:`TimeStretch.frames` ``(T) = max(1, floor(T / r + 1/2))``
stretched frames, so ``frames(T) * hop_length`` samples.
"""

from __future__ import annotations

import math

import torch

__all__ = ["TimeStretch"]


class TimeStretch:
    """The frame mapping of one speaking rate (see the module doc)."""

    def __init__(self, rate: float) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"a speaking rate must be a positive number, got {rate}")
        self.rate = float(rate)

    def frames(self, decoded: int) -> int:
        """Stretched frames of a sentence of ``decoded`` frames."""
        return max(1, math.floor(decoded / self.rate + 0.5))

    def position(self, j: int) -> float:
        """Where stretched frame ``j`` reads the decoded frames (before clamping)."""
        return (j + 0.5) * self.rate - 0.5

    def sources(self, start: int, end: int, decoded: int | None = None) -> tuple[int, int]:
        """The decoded frames ``[lo, hi)`` that stretched frames ``[start, end)`` read; with
        ``decoded`` (the sentence is finished) clamped to its frames."""
        lo = math.floor(max(0.0, self.position(start)))
        hi = math.floor(max(0.0, self.position(end - 1))) + 2  # the frame after, interpolated towards
        if decoded is not None:
            lo, hi = min(lo, decoded - 1), min(hi, decoded)
        return lo, hi

    def stretch(self, mel: torch.Tensor, lo: int, start: int, end: int, decoded: int | None = None) -> torch.Tensor:
        """Stretched frames ``[start, end)`` from ``mel`` (``(n_mels, n)``: decoded frames
        ``[lo, lo + n)``, at least :meth:`sources`). ``decoded`` (the sentence's frame count,
        once it is finished) clamps the last frames to the sentence's last."""
        j = torch.arange(start, end, dtype=torch.float64, device=mel.device)
        p = ((j + 0.5) * self.rate - 0.5).clamp(min=0.0)
        if decoded is not None:
            p = p.clamp(max=decoded - 1)
        i0 = p.floor()
        weight = (p - i0).to(mel.dtype)
        i0 = i0.long()
        i1 = i0 + 1
        if decoded is not None:
            i1 = i1.clamp(max=decoded - 1)
        first, after = mel[:, i0 - lo], mel[:, i1 - lo]
        return first + (after - first) * weight

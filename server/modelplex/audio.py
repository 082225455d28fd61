"""Audio helpers any task or plugin may use; no task's code lives here.

:class:`StreamResampler` resamples a signal that arrives in blocks (a client's audio
stream, a synthesizer's pieces) to exactly what ``torchaudio.functional.resample`` gives
for the whole signal, handing out each output sample as soon as the input under its
kernel has arrived.

torch and torchaudio are imported when a resampler is made, never when this module is:
a plugin's registration imports nothing heavy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["StreamResampler"]


class StreamResampler:
    """torchaudio's windowed-sinc resampler over a 1-D signal pushed block by block.

    ``torchaudio.functional.resample`` pads the signal with ``width`` zeros on the left and
    ``width + orig`` on the right and runs one strided convolution: output frame ``k`` (the
    ``new`` samples of one polyphase step, rates reduced by their gcd) reads the padded input
    ``[k * orig, k * orig + 2 * width + orig)``. This class keeps the padded input from the
    first frame not yet computed, computes each frame once its input is all there, and at
    :meth:`finish` pads the end and cuts the output to ``ceil(new * length / orig)`` samples,
    as torchaudio does. So any chunking, empty pushes included, gives the whole signal's
    output (up to the convolution's summation order, ~1e-7), with the same kernel
    (``torchaudio.transforms.Resample``'s, of ``dtype``).

    Input may be on any device and of any float dtype; it is resampled on the CPU in
    ``dtype`` (float32 unless given). Equal rates pass every block through unchanged (the
    same object).
    """

    def __init__(
        self,
        orig_freq: int,
        new_freq: int,
        *,
        lowpass_filter_width: int = 6,
        rolloff: float = 0.99,
        dtype: torch.dtype | None = None,
    ) -> None:
        if orig_freq <= 0 or new_freq <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_freq} and {new_freq}")
        self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)
        self.identity = orig_freq == new_freq
        """The rates are equal: :meth:`push` returns its input."""
        self.received = 0
        """Input samples pushed so far."""
        self.emitted = 0
        """Output samples returned so far."""
        self._finished = False
        if self.identity:
            return
        import torch
        import torchaudio

        self._dtype = dtype or torch.float32
        resample = torchaudio.transforms.Resample(
            orig_freq, new_freq, lowpass_filter_width=lowpass_filter_width, rolloff=rolloff, dtype=self._dtype
        )
        gcd = math.gcd(orig_freq, new_freq)
        self._orig, self._new = orig_freq // gcd, new_freq // gcd
        self._kernel: torch.Tensor = resample.kernel  # (new, 1, 2 * width + orig)
        self._width = int(resample.width)
        self._size = int(self._kernel.shape[-1])
        self._frames = 0  # output frames computed
        self._pending: list[torch.Tensor] = []  # blocks pushed since the last computation
        self._available = self._width  # samples of padded input held (buffer and pending)
        # The padded input from frame `_frames` on: `width` zeros, then the signal.
        self._buffer = torch.zeros(self._width, dtype=self._dtype)

    def push(self, samples: Any, *, final: bool = False) -> torch.Tensor:
        """Add input samples (a 1-D tensor or array; may be empty); return the output samples
        that are now complete (1-D, CPU). ``final`` also ends the signal (see :meth:`finish`)."""
        import torch

        if self._finished:
            raise RuntimeError("this resampler's signal has ended; make a new one")
        if self.identity:
            self.received += len(samples)
            self.emitted += len(samples)
            if final:
                self._finished = True
            return samples
        x = torch.as_tensor(samples).reshape(-1)
        if x.numel():
            self._pending.append(x.to("cpu", self._dtype))
            self._available += x.numel()
            self.received += x.numel()
        if final:
            return self.finish()
        ready = (self._available - self._size) // self._orig + 1 if self._available >= self._size else 0
        return self._compute(ready)

    def finish(self) -> torch.Tensor:
        """End the signal: the output samples left (its end zero-padded, as torchaudio pads it)."""
        import torch

        if self._finished:
            raise RuntimeError("this resampler's signal has ended; make a new one")
        self._finished = True
        if self.identity:
            return torch.zeros(0)
        self._pending.append(torch.zeros(self._width + self._orig, dtype=self._dtype))
        self._available += self._width + self._orig
        before = self.emitted
        frames = self.received // self._orig + 1  # torchaudio's frame count for the whole signal
        out = self._compute(frames - self._frames)
        # torchaudio's length: ceil(new * length / orig) samples, fewer than its frames give.
        out = out[: max(0, math.ceil(self._new * self.received / self._orig) - before)]
        self.emitted = before + out.numel()
        return out

    def _compute(self, n: int) -> torch.Tensor:
        """The next ``n`` output frames; drops the input no later frame reads."""
        import torch

        if n <= 0:
            return torch.zeros(0, dtype=self._dtype)
        if self._pending:
            self._buffer = torch.cat([self._buffer, *self._pending])
            self._pending = []
        span = (n - 1) * self._orig + self._size
        frames = torch.nn.functional.conv1d(self._buffer[None, None, :span], self._kernel, stride=self._orig)
        self._buffer = self._buffer[n * self._orig :]
        self._available -= n * self._orig
        self._frames += n
        out = frames[0].transpose(0, 1).reshape(-1)
        self.emitted += out.numel()
        return out

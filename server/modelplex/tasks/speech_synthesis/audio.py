"""The audio side of a synthesis: joining pieces, resampling, encoding, WAV files.

The same code joins and resamples a sentence's audio wherever it is synthesized (the
server's stream, :func:`~modelplex.tasks.speech_synthesis.offline.synthesize` in
process), so the chunks of a stream, concatenated, are exactly that audio.

- :class:`PieceJoiner`: a sentence's overlapping pieces, cross-faded (raised cosine), with
  a short fade-in and fade-out at the sentence's edges so that sentences join without a click.
- :class:`~modelplex.audio.StreamResampler` (shared with every task, re-exported here as
  ``StreamingResampler``): torchaudio's windowed-sinc resampler applied block by block; a
  sentence resampled in blocks equals ``torchaudio.functional.resample`` of the whole.

torch and torchaudio are imported when a sentence is rendered (on an instance's thread),
never when the server discovers the task.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any

from modelplex.audio import StreamResampler

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENCODINGS",
    "PieceJoiner",
    "StreamingResampler",
    "encode",
    "wav_file",
]

StreamingResampler = StreamResampler
"""This module's former name for :class:`modelplex.audio.StreamResampler`."""

ENCODINGS = ("linear16", "float32")
"""The sample encodings: signed 16-bit PCM, 32-bit float; both little-endian."""


def _raised_cosine(n: int, device: Any) -> torch.Tensor:
    """Weights rising from 0 to 1 over ``n`` samples (half a Hann window, sample-centred)."""
    import torch

    t = (torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n
    return 0.5 - 0.5 * torch.cos(math.pi * t)


class PieceJoiner:
    """Joins the pieces of one sentence into its audio, handing out each sample once it is final.

    A piece's first ``tail`` samples (the previous piece's ``tail``) are cross-faded with the
    previous piece's last ones; the sentence's first ``fade`` samples fade in and its last
    ``fade`` fade out. Samples that a later piece or the fade-out may still change are held back.
    """

    def __init__(self, fade: int) -> None:
        self.fade = max(0, fade)
        self._held: torch.Tensor | None = None
        self._held_tail = 0
        self._started = False

    def push(self, audio: Any, tail: int, final: bool) -> torch.Tensor:
        """Add the sentence's next piece; return the samples that are now final (1-D float32, CPU)."""
        import torch

        x = torch.as_tensor(audio).detach().to("cpu", torch.float32).reshape(-1)
        if self._held is not None:
            n = self._held_tail
            if x.numel() < n:
                raise ValueError(f"a piece of {x.numel()} samples cannot overlap the previous piece's last {n}")
            held = self._held
            if n:
                w = _raised_cosine(n, x.device)
                mixed = held[held.numel() - n :] * (1 - w) + x[:n] * w
                x = torch.cat([held[: held.numel() - n], mixed, x[n:]])
            else:
                x = torch.cat([held, x])
            self._held = None
        if not self._started and x.numel():
            self._started = True
            n = min(self.fade, x.numel())
            if n:
                x = x.clone()
                x[:n] *= _raised_cosine(n, x.device)
        if final:
            n = min(self.fade, x.numel())
            if n:
                x = x.clone()
                x[x.numel() - n :] *= _raised_cosine(n, x.device).flip(0)
            return x
        if tail < 0:
            raise ValueError(f"a piece's tail must be >= 0, got {tail}")
        keep = min(x.numel(), max(tail, self.fade))
        if keep < tail:
            raise ValueError(f"a piece's tail ({tail}) is longer than the audio held ({x.numel()} samples)")
        self._held, self._held_tail = x[x.numel() - keep :], tail
        return x[: x.numel() - keep]


def encode(samples: torch.Tensor, encoding: str) -> bytes:
    """Samples (clipped to [-1, 1]) as little-endian bytes: int16 for linear16, float32 for float32."""
    import torch

    x = samples.detach().to("cpu", torch.float32).clamp(-1.0, 1.0)
    if encoding == "linear16":
        return (x * 32767.0).round().to(torch.int16).numpy().astype("<i2").tobytes()
    if encoding == "float32":
        return x.numpy().astype("<f4").tobytes()
    raise ValueError(f"unknown encoding {encoding!r}; one of {', '.join(ENCODINGS)}")


def wav_file(data: bytes, sample_rate: int, encoding: str) -> bytes:
    """A mono RIFF/WAVE file holding ``data`` (encoded samples): 16-bit PCM for linear16,
    32-bit IEEE float (with the ``fact`` chunk non-PCM formats carry) for float32."""
    if encoding == "linear16":
        fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
        chunks = [b"fmt " + struct.pack("<I", len(fmt)) + fmt]
    elif encoding == "float32":
        fmt = struct.pack("<HHIIHHH", 3, 1, sample_rate, sample_rate * 4, 4, 32, 0)
        fact = struct.pack("<I", len(data) // 4)
        chunks = [b"fmt " + struct.pack("<I", len(fmt)) + fmt, b"fact" + struct.pack("<I", len(fact)) + fact]
    else:
        raise ValueError(f"unknown encoding {encoding!r}; one of {', '.join(ENCODINGS)}")
    pad = b"\x00" if len(data) % 2 else b""
    chunks.append(b"data" + struct.pack("<I", len(data)) + data + pad)
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body

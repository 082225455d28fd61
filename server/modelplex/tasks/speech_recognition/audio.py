"""Audio in: raw samples or files decoded to mono float32, and a streaming resampler that
equals a whole-clip ``torchaudio.functional.resample``.

Decoding runs wherever it is cheap (numpy on the event loop for a stream's chunks, a
thread for files); resampling runs on the instance's thread, in the session's step.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelplex.errors import InvalidInputError

__all__ = [
    "LINEAR16",
    "FLOAT32",
    "FILE",
    "MAX_RATE",
    "MIN_RATE",
    "AudioFormat",
    "StreamResampler",
    "decode_file",
    "decode_samples",
    "resample",
]

LINEAR16 = "linear16"
FLOAT32 = "float32"
FILE = "file"
MIN_RATE = 8_000
"""The lowest sample rate accepted, in Hz (telephone audio)."""
MAX_RATE = 192_000
"""The highest sample rate accepted, in Hz (studio audio)."""
MAX_CHANNELS = 8

# Above this, torchaudio's polyphase kernel (new/gcd taps per phase) gets large: the rates
# are rounded to this resolution first. Every common rate pair has a gcd of 100 Hz or more.
_MIN_GCD = 50


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What a client says of its audio bytes, checked by :meth:`check`."""

    encoding: str
    """:data:`LINEAR16`, :data:`FLOAT32` or :data:`FILE`."""
    sample_rate: int
    channels: int = 1

    def check(self, *, streaming: bool) -> AudioFormat:
        """This format with defaults filled in; InvalidInputError naming what is wrong."""
        if self.encoding not in (LINEAR16, FLOAT32, FILE):
            raise InvalidInputError(
                f"audio encoding {self.encoding!r} is not supported: use LINEAR16 or FLOAT32"
                + ("" if streaming else ", or FILE for a WAV or FLAC file")
            )
        if self.encoding == FILE:
            if streaming:
                raise InvalidInputError(
                    "a stream's audio must be raw samples (LINEAR16 or FLOAT32); send whole files with Recognize"
                )
            return self
        channels = self.channels or 1
        if not 1 <= channels <= MAX_CHANNELS:
            raise InvalidInputError(f"audio_channel_count must be 1 to {MAX_CHANNELS} (0 means 1), got {self.channels}")
        check_rate(self.sample_rate)
        return AudioFormat(self.encoding, self.sample_rate, channels)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel."""
        return (2 if self.encoding == LINEAR16 else 4) * self.channels


def check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidInputError(f"sample_rate_hz must be {MIN_RATE} to {MAX_RATE}, got {rate}")
    if rate % _MIN_GCD:
        raise InvalidInputError(f"sample_rate_hz must be a multiple of {_MIN_GCD} Hz, got {rate}")


def decode_samples(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """Raw interleaved samples to mono float32 (channels averaged)."""
    if len(data) % fmt.frame_bytes:
        what = "16-bit" if fmt.encoding == LINEAR16 else "32-bit float"
        raise InvalidInputError(
            f"{len(data)} bytes of {fmt.encoding.upper()} audio is not a whole number of {what} samples of "
            f"{fmt.channels} channel(s) ({fmt.frame_bytes} bytes each)"
        )
    if fmt.encoding == LINEAR16:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    else:
        samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if not np.isfinite(samples).all():
            raise InvalidInputError("FLOAT32 audio holds NaN or infinite samples")
    if fmt.channels > 1:
        samples = samples.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
    return samples


def decode_file(data: bytes) -> tuple[np.ndarray, int]:
    """A WAV or FLAC file (soundfile; ``torchaudio.load`` needs torchcodec) to mono float32
    and its rate."""
    import soundfile

    if not data:
        raise InvalidInputError("the audio file is empty")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise InvalidInputError(f"cannot read the audio file (WAV or FLAC expected): {e}") from None
    check_rate(int(rate))
    return np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)), int(rate)


def resample(samples: Any, rate: int, target: int) -> Any:
    """A whole clip (a 1-D float32 tensor) resampled with torchaudio's defaults."""
    if rate == target:
        return samples
    import torchaudio.functional as F

    return F.resample(samples, rate, target)


class StreamResampler:
    """Resamples a stream chunk by chunk to exactly what :func:`resample` gives for the whole
    stream: torchaudio's resampler is a strided convolution over the zero-padded clip, so
    each block of output needs only the input under its kernel. Each call runs torchaudio's
    own ``resample`` over the unconsumed input plus the kernel's reach, and keeps the blocks
    whose input was complete (all of them once the stream ends)."""

    def __init__(self, rate: int, target: int, lowpass_filter_width: int = 6, rolloff: float = 0.99) -> None:
        self.rate, self.target = rate, target
        gcd = math.gcd(rate, target)
        self.orig, self.new = rate // gcd, target // gcd
        # As torchaudio computes it: the kernel reaches `width` input samples on each side of a block.
        self.width = math.ceil(lowpass_filter_width * self.orig / (min(self.orig, self.new) * rolloff))
        self._reach = math.ceil(self.width / self.orig)  # blocks of input the kernel reaches back
        self._chunks: list[Any] = []
        self._buffer: Any = None
        self._start = 0  # the raw index of _buffer[0] (a multiple of orig)
        self._block = 0  # the next output block
        self.received = 0
        """Raw samples received."""

    def push(self, samples: Any, *, final: bool = False) -> Any:
        """Add raw samples (a 1-D float32 tensor); return the new output samples. ``final``
        ends the stream and returns the rest."""
        import torch

        if self.rate == self.target:
            self.received += len(samples)
            return samples
        if len(samples):
            self._chunks.append(samples)
            self.received += len(samples)
        if self._chunks:
            parts = [self._buffer, *self._chunks] if self._buffer is not None else self._chunks
            self._buffer = torch.cat(parts)
            self._chunks = []
        if self._buffer is None:
            return torch.zeros(0)
        o, n = self.orig, self.new
        first = max(0, self._block - self._reach)  # the first block of input to hand torchaudio
        offset = first * o - self._start
        segment = self._buffer[offset:]
        if final:
            last = math.ceil(self.received * n / o) - 1 - first * n  # the last output sample, from `first`
            end_block = self._block - first + 1 + last // n if last >= 0 else 0
        else:
            # Block b (from `first`) is complete when its kernel input b*o - width .. b*o + o + width is in.
            end_block = (len(segment) - o - self.width) // o + 1
        local = self._block - first
        if end_block <= local:
            return torch.zeros(0)
        out = resample(segment, o, n)
        take = out[local * n : end_block * n]
        self._block = first + end_block
        keep = max(0, self._block - self._reach) * o
        if keep > self._start:  # drop the input no later block reaches
            self._buffer = self._buffer[keep - self._start :]
            self._start = keep
        return take

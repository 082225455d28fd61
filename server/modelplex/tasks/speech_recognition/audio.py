"""Audio in: raw samples or files decoded to mono float32, and resampling: a whole clip
(:func:`resample`), or a stream with the shared :class:`~modelplex.audio.StreamResampler`
(re-exported here), which equals a whole-clip ``torchaudio.functional.resample``.

Decoding runs wherever it is cheap (numpy on the event loop for a stream's chunks, a
thread for files); resampling runs on the instance's thread, in the session's step.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelplex.audio import StreamResampler
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

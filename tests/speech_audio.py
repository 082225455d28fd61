"""Speech-like test audio: voiced syllables (a glottal pulse train through vowel formants) with
noise bursts between them, which silero-vad hears as speech, and silence between utterances."""

from __future__ import annotations

import io

import numpy as np

RATE = 16000

_VOWELS = (
    ((730, 90), (1090, 110), (2440, 170), (3400, 250)),
    ((270, 60), (2290, 100), (3010, 120), (3500, 250)),
    ((300, 60), (870, 90), (2240, 120), (3400, 250)),
    ((530, 60), (1840, 100), (2480, 120), (3500, 250)),
    ((570, 70), (840, 80), (2410, 120), (3400, 250)),
)


def _resonator(x: np.ndarray, freq: float, bandwidth: float, rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as F

    r = np.exp(-np.pi * bandwidth / rate)
    theta = 2 * np.pi * freq / rate
    a = torch.tensor([1.0, -2 * r * np.cos(theta), r * r], dtype=torch.float64)
    b = torch.tensor([1 - r, 0.0, 0.0], dtype=torch.float64)
    return F.lfilter(torch.from_numpy(x), a, b, clamp=False).numpy()


def _vowel(seconds: float, f0: float, formants, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 4 * t))) / rate % 1
    pulse = np.where(phase < 0.6, np.sin(np.pi * phase / 0.6) ** 2, 0.0)  # Rosenberg-like glottal pulse
    x = np.diff(pulse, prepend=0.0)
    for freq, bandwidth in formants:
        x = _resonator(x, freq, bandwidth, rate)
    ramp = np.minimum(1, np.minimum(np.arange(len(x)), np.arange(len(x))[::-1]) / (0.03 * rate))
    return x * ramp / max(1e-9, np.abs(x).max())


def utterance(seed: int, syllables: int = 8, rate: int = RATE) -> np.ndarray:
    """About 0.2-0.4 s per syllable of speech-like sound, peak 0.5."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(syllables):
        parts.append(_vowel(rng.uniform(0.15, 0.35), rng.uniform(110, 200), _VOWELS[rng.integers(5)], rate))
        parts.append(rng.normal(0, 0.05, int(rate * rng.uniform(0.03, 0.08))))
    x = np.concatenate(parts)
    return (x / np.abs(x).max() * 0.5).astype(np.float32)


def silence(seconds: float, seed: int = 1, rate: int = RATE) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.001, int(seconds * rate)).astype(np.float32)


def clip(seed: int = 0, utterances: int = 2, rate: int = RATE) -> np.ndarray:
    """Silence, then ``utterances`` utterances each followed by a second of silence."""
    parts = [silence(0.5, seed, rate)]
    for i in range(utterances):
        parts += [utterance(seed * 10 + i, rate=rate), silence(1.0, seed + i + 2, rate)]
    return np.concatenate(parts)


def linear16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def from_linear16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def wav(samples: np.ndarray, rate: int = RATE, fmt: str = "WAV") -> bytes:
    import soundfile

    buf = io.BytesIO()  # the same 16-bit values as linear16(samples)
    soundfile.write(buf, np.frombuffer(linear16(samples), dtype="<i2"), rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()

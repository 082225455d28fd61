"""The calls the conformance kit makes against a speech recognizer."""

from __future__ import annotations

import math
from typing import Any

from modelplex.taskdef import ConformanceProbes
from modelplex_client.pb import speech_recognition_pb2 as pb
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc

__all__ = ["PROBES"]

_RATE = 16000


_VOWELS = (
    ((730, 90), (1090, 110), (2440, 170)),
    ((270, 60), (2290, 100), (3010, 120)),
    ((570, 70), (840, 80), (2410, 120)),
)


def _syllable(seconds: float, f0: float, formants: tuple[tuple[int, int], ...]) -> Any:
    """A vowel: a glottal pulse train through its formant resonators (numpy only)."""
    import numpy as np

    n = int(seconds * _RATE)
    phase = (np.arange(n) * f0 / _RATE) % 1
    x = np.diff(np.where(phase < 0.6, np.sin(np.pi * phase / 0.6) ** 2, 0.0), prepend=0.0)
    for freq, bandwidth in formants:
        r, theta = math.exp(-math.pi * bandwidth / _RATE), 2 * math.pi * freq / _RATE
        a1, a2, y1, y2 = 2 * r * math.cos(theta), -r * r, 0.0, 0.0
        out = np.empty(n)
        for i, v in enumerate(x.tolist()):
            y1, y2 = (1 - r) * v + a1 * y1 + a2 * y2, y1
            out[i] = y1
        x = out
    ramp = np.minimum(1, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.03 * _RATE))
    return x * ramp / np.abs(x).max()


def _speechlike(seconds: float) -> bytes:
    """Syllables of vowel-like sound with noise between them, which voice-activity detectors
    hear as speech: LINEAR16 at 16 kHz."""
    import numpy as np

    rng = np.random.default_rng(0)
    parts: list[Any] = []
    total = 0
    while total < seconds * _RATE:
        v = _syllable(0.22, 110 + 20 * len(parts) % 80, _VOWELS[len(parts) % 3])
        parts += [v, rng.normal(0, 0.05, int(0.05 * _RATE))]
        total += len(v) + int(0.05 * _RATE)
    x = np.concatenate(parts)[: int(seconds * _RATE)]
    return (x / np.abs(x).max() * 0.5 * 32767).astype("<i2").tobytes()


def _config() -> pb.RecognitionConfig:
    return pb.RecognitionConfig(encoding=pb.RecognitionConfig.AUDIO_ENCODING_LINEAR16, sample_rate_hz=_RATE)


def _sample(channel: Any, model: str) -> None:
    response = pb_grpc.SpeechRecognitionStub(channel).Recognize(
        pb.RecognizeRequest(model=model, config=_config(), audio_content=_speechlike(1.0)), timeout=120
    )
    assert abs(response.audio_duration_ms - 1000) < 1, response


def _invalid(channel: Any, model: str) -> None:
    # LINEAR16 with an odd byte count is not whole samples.
    pb_grpc.SpeechRecognitionStub(channel).Recognize(
        pb.RecognizeRequest(model=model, config=_config(), audio_content=b"\x00\x01\x02"), timeout=60
    )


def _cancel(channel: Any, model: str) -> None:
    chunk = _speechlike(0.5)

    def requests() -> Any:
        yield pb.StreamingRecognizeRequest(
            streaming_config=pb.StreamingRecognitionConfig(model=model, config=_config(), interim_results=True)
        )
        while True:  # audio until the call is cancelled
            yield pb.StreamingRecognizeRequest(audio_content=chunk)

    call = pb_grpc.SpeechRecognitionStub(channel).StreamingRecognize(requests(), timeout=120)
    next(call)
    call.cancel()


PROBES = ConformanceProbes(sample=_sample, invalid=_invalid, cancel=_cancel)

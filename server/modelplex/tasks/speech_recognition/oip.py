"""Speech recognition over the Open Inference Protocol: Recognize's tensors (docs/speech-recognition.md).

Inputs, exactly one of:

- ``audio``: FP32 ``[N]``, mono samples in [-1, 1], with optionally ``sample_rate`` INT32
  ``[1]`` (Hz; absent: the model's own rate);
- ``audio_file``: BYTES ``[1]``, a WAV or FLAC file (its own rate and channels).

Parameter ``language`` (str; absent: the model's first). Outputs: ``transcript`` BYTES
``[1]`` (the segments' transcripts joined by spaces), ``segment_transcripts`` BYTES ``[S]``,
``segment_times_ms`` FP32 ``[S, 2]`` (start and end of each segment in the clip), ``words``
BYTES ``[W]`` and ``word_times_ms`` FP32 ``[W, 2]`` (every word of every segment, in order),
``audio_duration_ms`` FP32 ``[1]``. The request reaches the same runtime call as Recognize
(one session on the step scheduler), so it gives the same finals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from modelplex.errors import InvalidInputError
from modelplex.oip_mapping import OipMapping, OipMetadata, Outputs, Parameter, ParameterSpec, TensorSpec
from modelplex.server.runtimes.base import TaskRuntime
from modelplex.tasks.speech_recognition.audio import FILE, FLOAT32, AudioFormat
from modelplex.tasks.speech_recognition.runtime import SpeechRecognitionRuntime
from modelplex.tasks.speech_recognition.session import StreamOptions

__all__ = ["SpeechRecognitionOip"]


class SpeechRecognitionOip(OipMapping):
    """A clip (samples or a file) in; its transcript, segments and word times out."""

    def metadata(self, runtime: TaskRuntime[Any]) -> OipMetadata:
        return OipMetadata(
            inputs=(
                TensorSpec("audio", "FP32", (-1,), optional=True, description="mono samples in [-1, 1]"),
                TensorSpec(
                    "sample_rate", "INT32", (1,), optional=True, description="audio's rate in Hz; absent: the model's"
                ),
                TensorSpec("audio_file", "BYTES", (1,), optional=True, description="a WAV or FLAC file"),
            ),
            outputs=(
                TensorSpec("transcript", "BYTES", (1,), description="the whole clip's transcript, UTF-8"),
                TensorSpec("segment_transcripts", "BYTES", (-1,), description="each segment's transcript"),
                TensorSpec("segment_times_ms", "FP32", (-1, 2), description="each segment's start and end"),
                TensorSpec("words", "BYTES", (-1,), description="every word, in order"),
                TensorSpec("word_times_ms", "FP32", (-1, 2), description="each word's start and end in the clip"),
                TensorSpec("audio_duration_ms", "FP32", (1,), description="the clip's length"),
            ),
            parameters=(ParameterSpec("language", str, "one of the model's languages; absent: its first"),),
        )

    async def infer(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> Outputs:
        recognizer = cast(SpeechRecognitionRuntime, runtime)
        fmt, data = _audio(recognizer, inputs)
        options = StreamOptions(fmt, recognizer.language(str(parameters.get("language", ""))), word_offsets=True)
        results, duration = await recognizer.recognize(options, data, deadline)
        words = [w for r in results for w in r.words]
        return {
            "transcript": np.array([" ".join(r.transcript for r in results if r.transcript).encode()], dtype=object),
            "segment_transcripts": np.array([r.transcript.encode() for r in results], dtype=object),
            "segment_times_ms": np.array([[r.start_s * 1000, r.end_s * 1000] for r in results], np.float32).reshape(
                -1, 2
            ),
            "words": np.array([w.text.encode() for w in words], dtype=object),
            "word_times_ms": np.array([[w.start_s * 1000, w.end_s * 1000] for w in words], np.float32).reshape(-1, 2),
            "audio_duration_ms": np.array([duration * 1000], dtype=np.float32),
        }


def _audio(runtime: SpeechRecognitionRuntime, inputs: Mapping[str, np.ndarray]) -> tuple[AudioFormat, bytes]:
    samples, rate, file = inputs.get("audio"), inputs.get("sample_rate"), inputs.get("audio_file")
    if (samples is None) == (file is None):
        raise InvalidInputError("send exactly one of the inputs 'audio' (FP32 samples) and 'audio_file' (BYTES)")
    if file is not None:
        if rate is not None:
            raise InvalidInputError("sample_rate goes with audio only: a file says its own rate")
        return AudioFormat(FILE, 0), bytes(file[0])
    assert samples is not None
    if len(samples) == 0:
        raise InvalidInputError("audio holds no samples")
    if not np.isfinite(samples).all():
        raise InvalidInputError("audio holds NaN or infinite samples")
    hz = int(rate[0]) if rate is not None else runtime.sample_rate
    fmt = AudioFormat(FLOAT32, hz, 1).check(streaming=False)
    return fmt, np.ascontiguousarray(samples, dtype="<f4").tobytes()

"""Speech synthesis over the Open Inference Protocol: the task's tensors (docs/speech-synthesis.md).

Inputs: ``text`` BYTES ``[1]`` (UTF-8), and optionally ``sample_rate`` INT32 ``[1]`` (Hz;
absent: the model's own) and ``speaking_rate`` FP32 ``[1]`` (absent: 1), as Synthesize's
fields. Outputs: ``audio`` FP32 ``[N]`` (mono samples in [-1, 1]) and ``sample_rate`` INT32
``[1]``. ModelInfer answers with the whole audio (what SynthesizeWav holds); ModelStreamInfer
(decoupled) sends the audio chunk by chunk as the typed Synthesize stream does, the first
response with ``sample_rate`` too, the last with ``triton_final_response``: the chunks'
``audio``, concatenated, are ModelInfer's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import numpy as np

from modelplex.errors import InvalidInputError
from modelplex.oip_mapping import OipMapping, OipMetadata, Outputs, Parameter, Streamed, TensorSpec
from modelplex.server.runtimes.base import TaskRuntime
from modelplex.tasks.speech_synthesis.interface import SynthesisOptions
from modelplex.tasks.speech_synthesis.runtime import SpeechSynthesisRuntime
from modelplex.tasks.speech_synthesis.synth import AudioChunk, AudioFormat, SynthesisRequest

__all__ = ["SpeechSynthesisOip"]


class SpeechSynthesisOip(OipMapping):
    """A text (and optional output rate and speaking rate) in; float samples out, streamed."""

    decoupled = True

    def metadata(self, runtime: TaskRuntime[Any]) -> OipMetadata:
        return OipMetadata(
            inputs=(
                TensorSpec("text", "BYTES", (1,), description="the text to speak, UTF-8"),
                TensorSpec("sample_rate", "INT32", (1,), optional=True, description="output rate in Hz"),
                TensorSpec(
                    "speaking_rate", "FP32", (1,), optional=True, description="0.25 to 4, where the model allows"
                ),
            ),
            outputs=(
                TensorSpec("audio", "FP32", (-1,), description="mono samples in [-1, 1]"),
                TensorSpec("sample_rate", "INT32", (1,), description="the audio's rate in Hz"),
            ),
        )

    async def infer(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> Outputs:
        parts: list[np.ndarray] = []
        rate: np.ndarray | None = None
        async for out in self.stream(runtime, inputs, parameters, deadline):
            parts.append(out.outputs["audio"])
            rate = out.outputs.get("sample_rate", rate)
        assert rate is not None, "the first response carries the rate"
        return {"audio": np.concatenate(parts), "sample_rate": rate}

    async def stream(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> AsyncIterator[Streamed]:
        stream = cast(SpeechSynthesisRuntime, runtime).synthesize(_request(inputs), deadline)
        rate: int | None = None
        held: dict[str, np.ndarray] | None = None  # the latest chunk, sent once the next one (or the end) comes
        try:
            async for messages in stream:
                for message in messages:
                    if isinstance(message, AudioFormat):
                        rate = message.sample_rate
                    elif isinstance(message, AudioChunk):
                        if held is not None:
                            yield Streamed(held)
                        held = {"audio": np.frombuffer(message.audio, dtype="<f4").astype(np.float32)}
                        if rate is not None:
                            held["sample_rate"] = np.array([rate], dtype=np.int32)
                            rate = None  # the first response only
        finally:
            stream.cancel()  # a no-op once finished; else the call leaves its lane at the next step
        assert held is not None, "a finished synthesis has a chunk"
        yield Streamed(held, final=True)


def _request(inputs: Mapping[str, np.ndarray]) -> SynthesisRequest:
    try:
        text = bytes(inputs["text"][0]).decode()
    except UnicodeDecodeError:
        raise InvalidInputError("input 'text' is not valid UTF-8") from None
    rate = inputs.get("sample_rate")
    speed = inputs.get("speaking_rate")
    return SynthesisRequest(
        text=text,
        encoding="float32",
        sample_rate=None if rate is None else int(rate[0]),
        options=SynthesisOptions(speaking_rate=1.0 if speed is None else float(speed[0])),
    )

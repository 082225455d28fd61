"""The calls the conformance kit makes against a speech synthesizer."""

from __future__ import annotations

from typing import Any

from modelplex.taskdef import ConformanceProbes
from modelplex_client.pb import speech_synthesis_pb2 as pb
from modelplex_client.pb import speech_synthesis_pb2_grpc as pb_grpc

__all__ = ["PROBES"]


def _sample(channel: Any, model: str) -> None:
    messages = list(
        pb_grpc.SpeechSynthesisStub(channel).Synthesize(pb.SynthesizeRequest(model=model, text="Hello."), timeout=120)
    )
    kinds = [m.WhichOneof("content") for m in messages]
    assert kinds[0] == "format" and kinds[-1] == "summary" and "audio" in kinds, kinds
    assert sum(len(m.audio.audio_content) for m in messages) == 2 * messages[-1].summary.samples > 0, messages[-1]


def _invalid(channel: Any, model: str) -> None:
    pb_grpc.SpeechSynthesisStub(channel).SynthesizeWav(pb.SynthesizeWavRequest(model=model, text=""), timeout=60)


def _cancel(channel: Any, model: str) -> None:
    call = pb_grpc.SpeechSynthesisStub(channel).Synthesize(
        pb.SynthesizeRequest(model=model, text="One sentence. Another one. And a third one."), timeout=120
    )
    next(call)
    call.cancel()


PROBES = ConformanceProbes(sample=_sample, invalid=_invalid, cancel=_cancel)

"""modelplex.v1.SpeechSynthesis over the speech-synthesis runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from grpc import aio

from modelplex.errors import InvalidInputError
from modelplex.server.grpc_errors import deadline_of, grpc_errors, grpc_stream_errors
from modelplex.taskdef import RuntimeLookup
from modelplex.tasks.speech_synthesis.audio import wav_file
from modelplex.tasks.speech_synthesis.interface import SynthesisOptions
from modelplex.tasks.speech_synthesis.runtime import SpeechSynthesisRuntime
from modelplex.tasks.speech_synthesis.synth import AudioChunk, AudioFormat, Message, Summary, SynthesisRequest
from modelplex_client.pb import speech_synthesis_pb2 as pb
from modelplex_client.pb import speech_synthesis_pb2_grpc as pb_grpc

__all__ = ["SpeechSynthesisServicer", "add_servicers", "request_from_proto"]

_ENCODINGS = {
    pb.SYNTHESIS_ENCODING_UNSPECIFIED: "linear16",
    pb.SYNTHESIS_ENCODING_LINEAR16: "linear16",
    pb.SYNTHESIS_ENCODING_FLOAT32: "float32",
}
_ENCODING_ENUM = {"linear16": pb.SYNTHESIS_ENCODING_LINEAR16, "float32": pb.SYNTHESIS_ENCODING_FLOAT32}


def request_from_proto(request: pb.SynthesizeRequest | pb.SynthesizeWavRequest) -> SynthesisRequest:
    encoding = _ENCODINGS.get(request.encoding)  # type: ignore[call-overload]
    if encoding is None:
        raise InvalidInputError(f"encoding {request.encoding} is not one of LINEAR16 (1), FLOAT32 (2)")
    return SynthesisRequest(
        text=request.text,
        encoding=encoding,
        sample_rate=request.sample_rate_hz if request.HasField("sample_rate_hz") else None,
        options=SynthesisOptions(speaking_rate=request.speaking_rate if request.HasField("speaking_rate") else 1.0),
    )


def _format(f: AudioFormat) -> pb.SynthesisAudioFormat:
    return pb.SynthesisAudioFormat(
        encoding=_ENCODING_ENUM[f.encoding],
        sample_rate_hz=f.sample_rate,
        channels=1,
        model_sample_rate_hz=f.model_sample_rate,
    )


def _summary(s: Summary) -> pb.SynthesisSummary:
    return pb.SynthesisSummary(
        audio_seconds=s.audio_seconds,
        processing_seconds=s.processing_seconds,
        characters_dropped=s.characters_dropped,
        characters_normalized=s.characters_normalized,
        dropped_characters=s.dropped_characters,
        sentences=s.sentences,
        time_to_first_audio_ms=s.time_to_first_audio_s * 1000,
        samples=s.samples,
    )


def _response(request: pb.SynthesizeRequest, message: Message) -> pb.SynthesizeResponse:
    response = pb.SynthesizeResponse(request_id=request.request_id, model=request.model)
    if isinstance(message, AudioFormat):
        response.format.CopyFrom(_format(message))
    elif isinstance(message, AudioChunk):
        audio = response.audio
        audio.audio_content = message.audio
        audio.text_start, audio.text_end = message.start, message.end
        audio.sentence_index = message.sentence_index
        audio.sample_offset = message.sample_offset
        audio.sentence_end = message.sentence_end
    else:
        response.summary.CopyFrom(_summary(message))
    return response


class SpeechSynthesisServicer(pb_grpc.SpeechSynthesisServicer):
    def __init__(self, runtimes: RuntimeLookup) -> None:
        self._runtimes = runtimes

    def _runtime(self, model: str) -> SpeechSynthesisRuntime:
        return cast(SpeechSynthesisRuntime, self._runtimes(model))

    @grpc_stream_errors
    async def Synthesize(
        self, request: pb.SynthesizeRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.SynthesizeResponse]:
        runtime = self._runtime(request.model)
        stream = runtime.synthesize(request_from_proto(request), deadline_of(context))
        try:
            async for messages in stream:
                for message in messages:
                    yield _response(request, message)
        finally:
            stream.cancel()  # a no-op once finished; else the call leaves its lane at the next step

    @grpc_errors
    async def SynthesizeWav(
        self, request: pb.SynthesizeWavRequest, context: aio.ServicerContext
    ) -> pb.SynthesizeWavResponse:
        runtime = self._runtime(request.model)
        stream = runtime.synthesize(request_from_proto(request), deadline_of(context))
        response = pb.SynthesizeWavResponse(request_id=request.request_id, model=request.model)
        audio: list[bytes] = []
        fmt: AudioFormat | None = None
        try:
            async for messages in stream:
                for message in messages:
                    if isinstance(message, AudioFormat):
                        fmt = message
                        response.format.CopyFrom(_format(message))
                    elif isinstance(message, AudioChunk):
                        audio.append(message.audio)
                    else:
                        response.summary.CopyFrom(_summary(message))
        finally:
            stream.cancel()
        assert fmt is not None, "a finished stream starts with its format"
        response.wav = wav_file(b"".join(audio), fmt.sample_rate, fmt.encoding)
        return response


def add_servicers(runtimes: RuntimeLookup, server: aio.Server) -> None:
    pb_grpc.add_SpeechSynthesisServicer_to_server(SpeechSynthesisServicer(runtimes), server)

"""modelplex.v1.SpeechRecognition over the speech-recognition runtime."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import cast

from grpc import aio

from modelplex.errors import InvalidInputError
from modelplex.server.grpc_errors import deadline_of, grpc_errors, grpc_stream_errors
from modelplex.taskdef import RuntimeLookup
from modelplex.tasks.speech_recognition.audio import FILE, FLOAT32, LINEAR16, AudioFormat
from modelplex.tasks.speech_recognition.runtime import SpeechRecognitionRuntime
from modelplex.tasks.speech_recognition.session import (
    RecognitionResult,
    RecognitionStream,
    RecognitionUpdate,
    StreamOptions,
)
from modelplex_client.pb import speech_recognition_pb2 as pb
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc

__all__ = ["SpeechRecognitionServicer", "add_servicers", "options_from_proto"]

_ENCODINGS = {
    pb.RecognitionConfig.AUDIO_ENCODING_LINEAR16: LINEAR16,
    pb.RecognitionConfig.AUDIO_ENCODING_FLOAT32: FLOAT32,
    pb.RecognitionConfig.AUDIO_ENCODING_FILE: FILE,
}


def options_from_proto(
    runtime: SpeechRecognitionRuntime,
    config: pb.RecognitionConfig,
    *,
    streaming: bool,
    interim_results: bool = False,
    single_utterance: bool = False,
) -> StreamOptions:
    """A request's config, checked against the model."""
    encoding = _ENCODINGS.get(config.encoding)  # type: ignore[call-overload]
    if encoding is None:
        raise InvalidInputError(
            f"audio encoding {config.encoding} is unset or unknown: use LINEAR16 or FLOAT32"
            + ("" if streaming else " (or FILE for a WAV or FLAC file)")
        )
    fmt = AudioFormat(encoding, config.sample_rate_hz, config.audio_channel_count).check(streaming=streaming)
    return StreamOptions(
        fmt,
        runtime.language(config.language),
        interim_results=interim_results,
        single_utterance=single_utterance,
        word_offsets=config.enable_word_time_offsets,
    )


def _alternative(r: RecognitionResult) -> pb.SpeechRecognitionAlternative:
    return pb.SpeechRecognitionAlternative(
        transcript=r.transcript,
        confidence=r.confidence or 0.0,
        words=[pb.WordInfo(word=w.text, start_ms=_ms(w.start_s), end_ms=_ms(w.end_s)) for w in r.words],
    )


class SpeechRecognitionServicer(pb_grpc.SpeechRecognitionServicer):
    def __init__(self, runtimes: RuntimeLookup) -> None:
        self._runtimes = runtimes

    def _runtime(self, model: str) -> SpeechRecognitionRuntime:
        return cast(SpeechRecognitionRuntime, self._runtimes(model))

    @grpc_stream_errors
    async def StreamingRecognize(
        self, requests: AsyncIterator[pb.StreamingRecognizeRequest], context: aio.ServicerContext
    ) -> AsyncIterator[pb.StreamingRecognizeResponse]:
        messages = aiter(requests)
        first = await anext(messages, None)
        if first is None:
            raise InvalidInputError("the stream is empty: send a streaming_config first, then audio_content")
        if first.WhichOneof("streaming_request") != "streaming_config":
            raise InvalidInputError("the first message must carry streaming_config (and no audio)")
        cfg = first.streaming_config
        runtime = self._runtime(cfg.model)
        options = options_from_proto(
            runtime,
            cfg.config,
            streaming=True,
            interim_results=cfg.interim_results,
            single_utterance=cfg.single_utterance,
        )
        stream = runtime.open_stream(options, deadline_of(context))
        feeder = asyncio.create_task(_feed(runtime, stream, messages))
        try:
            async for update in stream:
                if not update.empty:
                    yield self._response(cfg, update, language=options.language)
        finally:
            feeder.cancel()
            stream.cancel()  # a no-op once finished; else the session leaves at once
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

    @staticmethod
    def _response(
        cfg: pb.StreamingRecognitionConfig, update: RecognitionUpdate, *, language: str
    ) -> pb.StreamingRecognizeResponse:
        message = pb.StreamingRecognizeResponse(
            request_id=cfg.request_id,
            model=cfg.model,
            audio_processed_ms=_ms(update.audio_processed_s),
            results=[
                pb.StreamingRecognitionResult(
                    alternatives=[_alternative(r)],
                    is_final=r.is_final,
                    stability=r.stability,
                    result_start_ms=_ms(r.start_s),
                    result_end_ms=_ms(r.end_s),
                    segment_index=r.segment,
                    language=language,
                )
                for r in update.results
            ],
        )
        if update.end_of_utterance:
            message.speech_event_type = pb.StreamingRecognizeResponse.SPEECH_EVENT_TYPE_END_OF_SINGLE_UTTERANCE
        return message

    @grpc_errors
    async def Recognize(self, request: pb.RecognizeRequest, context: aio.ServicerContext) -> pb.RecognizeResponse:
        started = time.perf_counter()
        runtime = self._runtime(request.model)
        options = options_from_proto(runtime, request.config, streaming=False)
        results, duration = await runtime.recognize(options, request.audio_content, deadline_of(context))
        return pb.RecognizeResponse(
            request_id=request.request_id,
            model=request.model,
            results=[
                pb.SpeechRecognitionResult(
                    alternatives=[_alternative(r)],
                    result_start_ms=_ms(r.start_s),
                    result_end_ms=_ms(r.end_s),
                    segment_index=r.segment,
                    language=options.language,
                )
                for r in results
            ],
            audio_duration_ms=_ms(duration),
            total_time_ms=(time.perf_counter() - started) * 1000,
        )


async def _feed(
    runtime: SpeechRecognitionRuntime,
    stream: RecognitionStream,
    messages: AsyncIterator[pb.StreamingRecognizeRequest],
) -> None:
    """Read the client's audio into the session until it half-closes; a bad message fails the stream."""
    try:
        while True:
            await stream.wait_for_room()
            message = await anext(messages, None)
            if message is None:
                break
            if stream.done or stream.cancelled:
                return
            if message.WhichOneof("streaming_request") != "audio_content":
                stream.fail(InvalidInputError("streaming_config may only be sent once, in the first message"))
                return
            runtime.push(stream, message.audio_content)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the client's side of the call failed (it went away)
        stream.fail(e)
        return
    runtime.finish(stream)


def add_servicers(runtimes: RuntimeLookup, server: aio.Server) -> None:
    pb_grpc.add_SpeechRecognitionServicer_to_server(SpeechRecognitionServicer(runtimes), server)


def _ms(seconds: float) -> float:
    """Seconds as milliseconds, to the microsecond: a word ending at 0.1 + 0.2 s ends at 300.0 ms,
    not 300.00000000000006."""
    return round(seconds * 1000, 3)

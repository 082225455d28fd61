"""Speech recognition calls of both clients: ``recognize`` (unary), ``stream_recognize`` (bidi),
streaming a WAV file, and the ``transcribe`` CLI command.

:class:`SpeechRecognitionCalls` is a mixin for :class:`modelplex_client.Client` and
:class:`modelplex_client.AsyncClient` (it needs their ``_channel``, ``_unary`` and
``timeout``). The bidirectional call is :func:`stream_recognize` (sync) and
:func:`stream_recognize_async` (asyncio), bound as ``client.stream_recognize(chunks, ...)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import wave
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from modelplex_client._methods import Unary
from modelplex_client._requests import server_error
from modelplex_client.pb import speech_recognition_pb2 as pb
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc

__all__ = [
    "SpeechRecognitionCalls",
    "add_transcribe_parser",
    "cli_transcribe",
    "recognition_config",
    "recognize_request",
    "stream_recognize",
    "stream_recognize_async",
    "streaming_requests",
    "wav_chunks",
]

_ENCODINGS = {
    "linear16": pb.RecognitionConfig.AUDIO_ENCODING_LINEAR16,
    "float32": pb.RecognitionConfig.AUDIO_ENCODING_FLOAT32,
    "file": pb.RecognitionConfig.AUDIO_ENCODING_FILE,
}


def recognition_config(
    *,
    encoding: str = "linear16",
    sample_rate_hz: int = 16000,
    channels: int = 1,
    word_time_offsets: bool = False,
    language: str = "",
) -> pb.RecognitionConfig:
    """A RecognitionConfig; ``encoding`` is "linear16", "float32" or "file" (a WAV/FLAC file, Recognize only)."""
    return pb.RecognitionConfig(
        encoding=_ENCODINGS[encoding.lower()],
        sample_rate_hz=sample_rate_hz,
        audio_channel_count=channels,
        enable_word_time_offsets=word_time_offsets,
        language=language,
    )


def recognize_request(
    audio: bytes | str | os.PathLike[str], *, model: str, request_id: str = "", **config: Any
) -> pb.RecognizeRequest:
    """A RecognizeRequest: ``audio`` is raw samples (bytes; say ``encoding=`` and ``sample_rate_hz=``),
    or the path of a WAV or FLAC file (sent whole: its header gives the rate)."""
    if isinstance(audio, str | os.PathLike):
        data = Path(audio).read_bytes()
        config = {**config, "encoding": "file", "sample_rate_hz": 0}
    else:
        data = bytes(audio)
    return pb.RecognizeRequest(
        model=model, request_id=request_id, config=recognition_config(**config), audio_content=data
    )


def streaming_requests(
    chunks: Iterable[bytes],
    *,
    model: str,
    interim_results: bool = True,
    single_utterance: bool = False,
    request_id: str = "",
    **config: Any,
) -> Iterator[pb.StreamingRecognizeRequest]:
    """The config message, then one message per chunk of audio."""
    yield pb.StreamingRecognizeRequest(
        streaming_config=pb.StreamingRecognitionConfig(
            model=model,
            request_id=request_id,
            config=recognition_config(**config),
            interim_results=interim_results,
            single_utterance=single_utterance,
        )
    )
    for chunk in chunks:
        yield pb.StreamingRecognizeRequest(audio_content=chunk)


def wav_chunks(
    path: str | os.PathLike[str], *, chunk_ms: float = 100, realtime: bool = False
) -> tuple[dict[str, int], Iterator[bytes]]:
    """A 16-bit PCM WAV file as ``({"sample_rate_hz", "channels"}, chunks of chunk_ms)``; with
    ``realtime`` the chunks come at the pace of the audio (as from a microphone)."""
    w = wave.open(str(path), "rb")
    if w.getsampwidth() != 2:
        w.close()
        raise ValueError(f"{path}: only 16-bit PCM WAV files stream (LINEAR16); send others with recognize()")
    rate, channels = w.getframerate(), w.getnchannels()
    frames = max(1, int(rate * chunk_ms / 1000))

    def chunks() -> Iterator[bytes]:
        start = time.monotonic()
        sent = 0
        with w:
            while data := w.readframes(frames):
                if realtime:
                    time.sleep(max(0.0, start + sent / rate - time.monotonic()))
                sent += len(data) // (2 * channels)
                yield data

    return {"sample_rate_hz": rate, "channels": channels}, chunks()


def stream_recognize(
    client: Any, chunks: Iterable[bytes], *, model: str, timeout: float | None = None, **options: Any
) -> Iterator[pb.StreamingRecognizeResponse]:
    """Live recognition with the sync client: send ``chunks`` of audio (LINEAR16 at 16 kHz unless
    ``encoding=``/``sample_rate_hz=`` say otherwise), yield the responses as they come (interim
    and final results). Leaving the iteration early cancels the call."""
    call = client._speech.StreamingRecognize(
        streaming_requests(chunks, model=model, **options), timeout=client.timeout if timeout is None else timeout
    )
    try:
        yield from call
    except grpc.RpcError as e:
        raise server_error(e) from None
    finally:
        call.cancel()


async def stream_recognize_async(
    client: Any,
    chunks: Iterable[bytes] | AsyncIterable[bytes],
    *,
    model: str,
    timeout: float | None = None,
    **options: Any,
) -> AsyncIterator[pb.StreamingRecognizeResponse]:
    """:func:`stream_recognize` for the asyncio client; ``chunks`` may be an async iterable."""

    async def requests() -> AsyncIterator[pb.StreamingRecognizeRequest]:
        first = next(streaming_requests((), model=model, **options))
        yield first
        if hasattr(chunks, "__aiter__"):
            async for chunk in chunks:  # type: ignore[union-attr]
                yield pb.StreamingRecognizeRequest(audio_content=chunk)
        else:
            for chunk in chunks:  # type: ignore[union-attr]
                yield pb.StreamingRecognizeRequest(audio_content=chunk)

    call = client._speech.StreamingRecognize(requests(), timeout=client.timeout if timeout is None else timeout)
    try:
        async for response in call:
            yield response
    except grpc.RpcError as e:
        raise server_error(e) from None
    finally:
        call.cancel()


class SpeechRecognitionCalls:
    """The speech-recognition calls, for the clients' ``Methods``."""

    _channel: Any

    @property
    def _speech(self) -> pb_grpc.SpeechRecognitionStub:
        stub = self.__dict__.get("_speech_stub")
        if stub is None:
            stub = self.__dict__["_speech_stub"] = pb_grpc.SpeechRecognitionStub(self._channel)
        return stub

    recognize = Unary(
        "_speech",
        "Recognize",
        recognize_request,
        lambda r: list(r.results),
        doc="Transcribe a whole clip: ``recognize(audio, model=, encoding='linear16', sample_rate_hz=16000, "
        "channels=1, word_time_offsets=False, language='')`` with raw samples, or ``recognize(path, model=)`` "
        "for a WAV or FLAC file; one final result per segment with speech.",
    )


def _text(response: pb.StreamingRecognizeResponse) -> tuple[str, bool]:
    return " ".join(r.alternatives[0].transcript for r in response.results if r.alternatives), any(
        r.is_final for r in response.results
    )


def cli_transcribe(client: Any, args: argparse.Namespace) -> None:
    """``modelplex transcribe FILE.wav --model M``: stream the file, rewrite interim results in place
    on a terminal and print each final on its own line (``--json``: one object per response)."""
    fmt, chunks = wav_chunks(args.file, chunk_ms=args.chunk_ms, realtime=args.realtime)
    tty = sys.stdout.isatty() and not args.json
    responses = stream_recognize(
        client,
        chunks,
        model=args.model,
        interim_results=not args.no_interim,
        word_time_offsets=args.words,
        language=args.language,
        **fmt,
    )
    width = 0
    for response in responses:
        if args.json:
            print(json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True)), flush=True)
            continue
        for r in response.results:
            text = r.alternatives[0].transcript if r.alternatives else ""
            if r.is_final:
                line = f"[{r.result_start_ms / 1000:7.2f}s] {text}"
                print(("\r" + " " * width + "\r" if tty and width else "") + line, flush=True)
                width = 0
            elif tty:
                shown = text[-(os.get_terminal_size().columns - 2) :]
                print("\r" + shown.ljust(width), end="", flush=True)
                width = len(shown)


def add_transcribe_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The ``transcribe`` command's parser (with ``--server``, ``--timeout`` and ``--json``)."""
    c = subparsers.add_parser("transcribe", help="stream a WAV file to a speech recognizer, printing transcripts live")
    c.add_argument("--server", default="127.0.0.1:50051", help="host:port of the server")
    c.add_argument("--timeout", type=float, default=None, help="seconds for the whole stream (default: none)")
    c.add_argument("--json", action="store_true", help="one JSON object per response")
    c.add_argument("file", help="a 16-bit PCM WAV file (any rate, any channels)")
    c.add_argument("--model", required=True)
    c.add_argument(
        "--realtime", action="store_true", help="send at the pace of the audio (default: as fast as possible)"
    )
    c.add_argument("--chunk-ms", type=float, default=100, help="audio per message (default 100 ms)")
    c.add_argument("--no-interim", action="store_true", help="final results only")
    c.add_argument("--words", action="store_true", help="word time offsets (shown with --json)")
    c.add_argument("--language", default="", help="a language the model knows (default: its first)")
    return c

"""The speech-synthesis calls of both clients, and the ``modelplex speak`` command.

:class:`SpeechSynthesisCalls` is a mixin of :class:`~modelplex_client.Client` and
:class:`~modelplex_client.AsyncClient`: its calls are described once (like those of
``_methods.py``) and bound by both, on a stub it makes on the client's channel.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

from modelplex_client._methods import Stream, Unary
from modelplex_client.pb import speech_synthesis_pb2 as pb
from modelplex_client.pb import speech_synthesis_pb2_grpc as pb_grpc

__all__ = [
    "SpeechSynthesisCalls",
    "add_speak_parser",
    "audio_of",
    "cli_speak",
    "synthesize_request",
    "synthesize_wav_request",
    "wav_file",
]

_ENCODINGS = {
    "linear16": pb.SYNTHESIS_ENCODING_LINEAR16,
    "float32": pb.SYNTHESIS_ENCODING_FLOAT32,
}


def _encoding(value: str | int) -> Any:
    if isinstance(value, int):
        return value
    try:
        return _ENCODINGS[value.lower()]
    except KeyError:
        raise ValueError(f"encoding {value!r} is not one of {', '.join(_ENCODINGS)}") from None


def synthesize_request(
    text: str,
    *,
    model: str,
    encoding: str | int = "linear16",
    sample_rate_hz: int | None = None,
    speaking_rate: float | None = None,
    request_id: str = "",
) -> pb.SynthesizeRequest:
    """A SynthesizeRequest; ``encoding`` is ``"linear16"``, ``"float32"`` or the enum's value;
    None leaves ``sample_rate_hz`` (the model's own rate) and ``speaking_rate`` unset."""
    request = pb.SynthesizeRequest(model=model, text=text, encoding=_encoding(encoding), request_id=request_id)
    if sample_rate_hz is not None:
        request.sample_rate_hz = sample_rate_hz
    if speaking_rate is not None:
        request.speaking_rate = speaking_rate
    return request


def synthesize_wav_request(text: str, *, model: str, **options: Any) -> pb.SynthesizeWavRequest:
    """A SynthesizeWavRequest: the same fields as :func:`synthesize_request`."""
    request = pb.SynthesizeWavRequest()
    request.ParseFromString(synthesize_request(text, model=model, **options).SerializeToString())
    return request


def audio_of(messages: Iterable[pb.SynthesizeResponse]) -> tuple[pb.SynthesisAudioFormat, bytes, pb.SynthesisSummary]:
    """A Synthesize stream's format, its whole audio (the chunks joined) and its summary."""
    fmt, summary, parts = pb.SynthesisAudioFormat(), pb.SynthesisSummary(), []
    for m in messages:
        kind = m.WhichOneof("content")
        if kind == "format":
            fmt = m.format
        elif kind == "audio":
            parts.append(m.audio.audio_content)
        elif kind == "summary":
            summary = m.summary
    return fmt, b"".join(parts), summary


def wav_file(audio: bytes, fmt: pb.SynthesisAudioFormat) -> bytes:
    """A mono WAV file of streamed audio: 16-bit PCM (LINEAR16) or 32-bit float (FLOAT32)."""
    rate = fmt.sample_rate_hz
    if fmt.encoding == pb.SYNTHESIS_ENCODING_FLOAT32:
        head = struct.pack("<HHIIHHH", 3, 1, rate, rate * 4, 4, 32, 0)
        chunks = b"fmt " + struct.pack("<I", len(head)) + head + b"fact" + struct.pack("<II", 4, len(audio) // 4)
    else:
        head = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
        chunks = b"fmt " + struct.pack("<I", len(head)) + head
    data = b"data" + struct.pack("<I", len(audio)) + audio + (b"\x00" if len(audio) % 2 else b"")
    body = b"WAVE" + chunks + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


class SpeechSynthesisCalls:
    """The SpeechSynthesis calls; each takes ``timeout=`` and raises ServerError on failure."""

    _channel: Any

    @property
    def _speech_synthesis(self) -> pb_grpc.SpeechSynthesisStub:
        stub = self.__dict__.get("_speech_synthesis_stub")
        if stub is None:
            stub = self.__dict__["_speech_synthesis_stub"] = pb_grpc.SpeechSynthesisStub(self._channel)
        return stub

    synthesize = Stream(
        "_speech_synthesis",
        "Synthesize",
        synthesize_request,
        doc="Speak a text: ``synthesize(text, model=, encoding='linear16', sample_rate_hz=None, speaking_rate=None, "
        "request_id='')``, yielding SynthesizeResponse messages as they arrive: the ``format`` first, then "
        "``audio`` chunks (``audio_content`` and the text span ``text_start:text_end`` they voice), then the "
        "``summary``. The chunks' audio, joined, is the whole audio (``audio_of`` joins it).",
    )
    synthesize_wav = Unary(
        "_speech_synthesis",
        "SynthesizeWav",
        synthesize_wav_request,
        doc="The whole speech of a text as one WAV file (the unary SynthesizeWav call); arguments as for "
        "``synthesize``. Returns the SynthesizeWavResponse: ``wav`` (the file's bytes), ``format``, ``summary``.",
    )


def add_speak_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``modelplex speak`` to the command's subparsers."""
    p = subparsers.add_parser("speak", help="speak a text: write a WAV file, raw audio, or play it")
    p.add_argument("--server", default="127.0.0.1:50051", help="host:port of the server")
    p.add_argument("--timeout", type=float, default=None, help="seconds for the whole call (default: none)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("text", help="the text to speak")
    p.add_argument("--model", required=True)
    p.add_argument("-o", "--output", help="a .wav file to write, or - for the raw audio on stdout as it arrives")
    p.add_argument("--play", action="store_true", help="play the audio as it arrives (aplay, paplay, ffplay or sox)")
    p.add_argument("--rate", type=int, default=None, help="sample rate in Hz (default: the model's)")
    p.add_argument("--encoding", choices=sorted(_ENCODINGS), default="linear16")
    p.add_argument("--speaking-rate", type=float, default=None, help="0.25 to 4; 2 speaks twice as fast (default 1)")
    return p


_PLAYERS = (
    ("aplay", ["-q", "-t", "raw", "-f", "{aplay}", "-c", "1", "-r", "{rate}"]),
    ("paplay", ["--raw", "--format={pulse}", "--channels=1", "--rate={rate}"]),
    ("ffplay", ["-nodisp", "-autoexit", "-loglevel", "quiet", "-f", "{ffmpeg}", "-ar", "{rate}", "-"]),
    ("play", ["-q", "-t", "raw", "-e", "{sox}", "-b", "{bits}", "-c", "1", "-r", "{rate}", "-"]),
)


def _player(fmt: pb.SynthesisAudioFormat) -> list[str]:
    """The command line of the first audio player found that reads raw audio on stdin."""
    floats = fmt.encoding == pb.SYNTHESIS_ENCODING_FLOAT32
    names = {
        "rate": str(fmt.sample_rate_hz),
        "aplay": "FLOAT_LE" if floats else "S16_LE",
        "pulse": "float32le" if floats else "s16le",
        "ffmpeg": "f32le" if floats else "s16le",
        "sox": "floating-point" if floats else "signed-integer",
        "bits": "32" if floats else "16",
    }
    for name, args in _PLAYERS:
        path = shutil.which(name)
        if path:
            return [path, *(a.format(**names) for a in args)]
    raise OSError("no audio player found for --play (looked for aplay, paplay, ffplay, play); use -o out.wav")


def cli_speak(client: Any, args: argparse.Namespace) -> None:
    """``modelplex speak``: stream the speech, writing raw audio to stdout or a player as it
    arrives, and the whole of it to a WAV file at the end."""
    if not args.output and not args.play:
        raise OSError("say where the audio goes: -o out.wav, -o - (raw audio on stdout) or --play")
    stream = client.synthesize(
        args.text, model=args.model, encoding=args.encoding, sample_rate_hz=args.rate, speaking_rate=args.speaking_rate
    )
    fmt, parts, summary = pb.SynthesisAudioFormat(), [], pb.SynthesisSummary()
    player: subprocess.Popen[bytes] | None = None
    raw = sys.stdout.buffer if args.output == "-" else None
    try:
        for message in stream:
            kind = message.WhichOneof("content")
            if kind == "format":
                fmt = message.format
                if args.play:
                    player = subprocess.Popen(_player(fmt), stdin=subprocess.PIPE)
            elif kind == "audio":
                data = message.audio.audio_content
                parts.append(data)
                for sink in (raw, player.stdin if player else None):
                    if sink is not None:
                        sink.write(data)
                        sink.flush()
            elif kind == "summary":
                summary = message.summary
    finally:
        if player is not None and player.stdin is not None:
            player.stdin.close()
            player.wait()
    if args.output and args.output != "-":
        with open(args.output, "wb") as f:
            f.write(wav_file(b"".join(parts), fmt))
    info = {
        "audio_seconds": round(summary.audio_seconds, 3),
        "sample_rate_hz": fmt.sample_rate_hz,
        "sentences": summary.sentences,
        "first_audio_ms": round(summary.time_to_first_audio_ms, 1),
        "processing_seconds": round(summary.processing_seconds, 3),
        "characters_dropped": summary.characters_dropped,
    }
    if args.json:
        print(json.dumps(info), file=sys.stderr if raw else sys.stdout)
    else:
        dropped = f", dropped {summary.dropped_characters!r}" if summary.characters_dropped else ""
        print(
            f"[{summary.audio_seconds:.2f} s of audio at {fmt.sample_rate_hz} Hz, {summary.sentences} sentences, "
            f"first audio after {summary.time_to_first_audio_ms:.0f} ms{dropped}]",
            file=sys.stderr,
        )

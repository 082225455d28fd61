"""The speech-synthesis calls of the sync and asyncio clients, and ``modelplex speak``: the WAV
it writes reads back with soundfile at the asked rate and length; ``-o -`` streams raw audio;
``--play`` pipes the audio to a player as it arrives."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import stat
import sys

import numpy as np
import pytest

from modelplex.testing import running_server
from modelplex_client import AsyncClient, Client, ServerError
from modelplex_client._speech_synthesis_calls import add_speak_parser, audio_of, cli_speak
from tts_models import save_tacotron, tts_model

TEXT = "Speak this. Then this, please."


TTSClient, TTSAsyncClient = Client, AsyncClient  # both clients carry the speech synthesis calls


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    taco = save_tacotron(tmp_path_factory.mktemp("tts") / "t.pt")
    with running_server({"models": [tts_model("tts", "tacotron2-griffinlim", taco)]}) as s:
        yield s


def test_sync_and_async_clients_stream_the_same_audio_as_synthesize_wav(server):
    import soundfile

    with TTSClient(server.address, timeout=60) as client:
        fmt, audio, summary = audio_of(client.synthesize(TEXT, model="tts", sample_rate_hz=16000, request_id="x"))
        wav = client.synthesize_wav(TEXT, model="tts", sample_rate_hz=16000)
        with pytest.raises(ServerError) as e:
            list(client.synthesize("", model="tts"))
        assert e.value.code.name == "INVALID_ARGUMENT"

    async def run() -> bytes:
        async with TTSAsyncClient(server.address, timeout=60) as client:
            messages = [m async for m in client.synthesize(TEXT, model="tts", sample_rate_hz=16000)]
            again = await client.synthesize_wav(TEXT, model="tts", sample_rate_hz=16000)
            assert again.wav == wav.wav
            return audio_of(messages)[1]

    assert asyncio.run(run()) == audio
    assert fmt.sample_rate_hz == 16000 and summary.samples == len(audio) // 2 > 0
    data, rate = soundfile.read(io.BytesIO(wav.wav), dtype="int16")
    assert rate == 16000 and data.tobytes() == audio


def _speak(server, *argv: str) -> None:
    parser = argparse.ArgumentParser(prog="modelplex")
    add_speak_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["speak", *argv, "--server", server.address])
    with TTSClient(args.server, timeout=args.timeout) as client:
        cli_speak(client, args)


@pytest.mark.parametrize("encoding,rate", [("linear16", 8000), ("float32", 24000)])
def test_speak_writes_a_wav_file_at_the_asked_rate(server, tmp_path, capsys, encoding, rate):
    import soundfile

    out = tmp_path / "out.wav"
    _speak(server, TEXT, "--model", "tts", "-o", str(out), "--rate", str(rate), "--encoding", encoding, "--json")
    summary = __import__("json").loads(capsys.readouterr().out)
    data, got_rate = soundfile.read(out, dtype="float32")
    assert got_rate == rate and summary["sample_rate_hz"] == rate
    assert (
        len(data) == round(summary["audio_seconds"] * rate) or abs(len(data) / rate - summary["audio_seconds"]) < 1e-3
    )
    with TTSClient(server.address, timeout=60) as client:
        _, audio, _ = audio_of(client.synthesize(TEXT, model="tts", sample_rate_hz=rate, encoding=encoding))
    dtype, scale = ("<i2", 32768.0) if encoding == "linear16" else ("<f4", 1.0)
    np.testing.assert_array_equal(data, np.frombuffer(audio, dtype=dtype).astype("float32") / scale)


def test_speak_to_stdout_writes_the_raw_audio(server, capfdbinary):
    _speak(server, TEXT, "--model", "tts", "-o", "-")
    raw = capfdbinary.readouterr().out
    with TTSClient(server.address, timeout=60) as client:
        assert raw == audio_of(client.synthesize(TEXT, model="tts"))[1]


def test_speak_passes_the_speaking_rate(server, capfdbinary):
    _speak(server, TEXT, "--model", "tts", "-o", "-", "--speaking-rate", "2")
    raw = capfdbinary.readouterr().out
    with TTSClient(server.address, timeout=60) as client:
        assert raw == audio_of(client.synthesize(TEXT, model="tts", speaking_rate=2.0))[1]
        assert raw != audio_of(client.synthesize(TEXT, model="tts"))[1]


def test_speak_play_pipes_the_audio_to_a_player(server, tmp_path, monkeypatch):
    """A stand-in `aplay` on PATH records its arguments and what it was fed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    player = bin_dir / "aplay"
    player.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"open({str(tmp_path / 'args')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"open({str(tmp_path / 'fed')!r}, 'wb').write(sys.stdin.buffer.read())\n"
    )
    player.chmod(player.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _speak(server, TEXT, "--model", "tts", "--play")
    assert (tmp_path / "args").read_text() == "-q -t raw -f S16_LE -c 1 -r 22050"
    with TTSClient(server.address, timeout=60) as client:
        assert (tmp_path / "fed").read_bytes() == audio_of(client.synthesize(TEXT, model="tts"))[1]


def test_speak_needs_somewhere_to_put_the_audio(server):
    with pytest.raises(OSError, match="-o out.wav"):
        _speak(server, TEXT, "--model", "tts")

"""The client's speech calls (the mixin, stream_recognize sync and asyncio, WAV streaming) and the
``transcribe`` command, against a real server."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest

from modelplex.testing import running_server
from modelplex_client import AsyncClient, Client
from modelplex_client._speech_recognition_calls import (
    add_transcribe_parser,
    cli_transcribe,
    stream_recognize,
    stream_recognize_async,
    wav_chunks,
)
from speech_audio import clip, linear16, wav
from speech_models import w2v_model

SpeechClient, AsyncSpeechClient = Client, AsyncClient  # both clients carry the speech calls


@pytest.fixture(scope="module")
def server():
    with running_server({"models": [w2v_model()]}) as s:
        yield s


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    samples = clip(seed=11, utterances=2)
    path = tmp_path_factory.mktemp("speech") / "clip.wav"
    path.write_bytes(wav(samples))
    return linear16(samples), path


def _finals(responses):
    return [r.alternatives[0].transcript for m in responses for r in m.results if r.is_final]


def test_recognize_bytes_and_a_file(server, audio):
    raw, path = audio
    with SpeechClient(server.address, timeout=60) as client:
        from_bytes = client.recognize(raw, model="w2v")
        from_file = client.recognize(path, model="w2v")
    assert len(from_bytes) == 2
    assert [r.alternatives[0].transcript for r in from_file] == [r.alternatives[0].transcript for r in from_bytes]


def test_stream_recognize_sync_and_async_give_the_finals_of_recognize(server, audio):
    raw, path = audio
    with SpeechClient(server.address, timeout=60) as client:
        expected = [r.alternatives[0].transcript for r in client.recognize(raw, model="w2v")]
        fmt, chunks = wav_chunks(path, chunk_ms=50)
        assert fmt == {"sample_rate_hz": 16000, "channels": 1}
        assert _finals(stream_recognize(client, chunks, model="w2v", **fmt)) == expected

    async def run():
        async with AsyncSpeechClient(server.address, timeout=60) as client:

            async def chunks():
                for i in range(0, len(raw), 3200):
                    yield raw[i : i + 3200]

            return [m async for m in stream_recognize_async(client, chunks(), model="w2v")]

    assert _finals(asyncio.run(run())) == expected


def test_wav_chunks_at_real_time_pace_yield_the_same_audio(audio):
    raw, path = audio
    _, chunks = wav_chunks(path, chunk_ms=250, realtime=True)
    first = next(chunks)
    assert len(first) == 4000 * 2
    assert first + b"".join(chunks) == raw


def test_the_transcribe_command_prints_one_json_object_per_response(server, audio, capsys):
    _, path = audio
    parser = argparse.ArgumentParser()
    add_transcribe_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["transcribe", str(path), "--model", "w2v", "--json", "--chunk-ms", "200"])
    with SpeechClient(server.address, timeout=60) as client:
        cli_transcribe(client, args)
        expected = [r.alternatives[0].transcript for r in client.recognize(path, model="w2v")]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finals = [r["alternatives"][0]["transcript"] for m in lines for r in m["results"] if r.get("is_final")]
    assert finals == expected
    assert any(not r.get("is_final") for m in lines for r in m["results"])  # interim results too


def test_the_transcribe_command_prints_each_final_on_its_own_line(server, audio, capsys):
    _, path = audio
    parser = argparse.ArgumentParser()
    add_transcribe_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["transcribe", str(path), "--model", "w2v"])
    with SpeechClient(server.address, timeout=60) as client:
        cli_transcribe(client, args)
        expected = [r.alternatives[0].transcript for r in client.recognize(path, model="w2v")]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == expected

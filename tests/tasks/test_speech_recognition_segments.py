"""The second kind of recognizer: a model that decodes only whole segments (here a plugin's
``SegmentRecognizer`` over the tiny Wav2Vec 2.0, run once per whole input). Its interim results
re-decode the open segment every interim_interval_ms of new audio, or none with 0; its finals
are one pass per segment, as for streaming models."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from modelplex import LoadContext, ModelSpec, hookimpl
from modelplex.tasks.speech_recognition import SegmentRecognizer, Transcript
from modelplex.testing import running_server
from modelplex_client.pb import speech_recognition_pb2 as pb
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc
from speech_audio import RATE, clip, from_linear16, linear16
from speech_models import hf_decode, speech_dirs


class WholeSegments(SegmentRecognizer):
    """Transcribes each whole segment with transformers alone, and counts its calls."""

    sample_rate = 16000
    calls: list[int] = []

    def __init__(self, ctx: LoadContext[Any]) -> None:
        self.ctx = ctx

    def load(self) -> None:
        self.folder = speech_dirs()["w2v"]

    def unload(self) -> None:
        self.folder = None

    def transcribe(self, segments, language):
        WholeSegments.calls.append(len(segments))
        return [Transcript(hf_decode(s.numpy())) for s in segments]


class Plugin:
    @hookimpl
    def register_models(self, register):
        register(
            ModelSpec(
                name="whole-segments",
                task="speech_recognition",
                factory=WholeSegments,
                variants=(),
            )
        )


@pytest.fixture(scope="module")
def server():
    models = [
        {"spec": "whole-segments", "name": "seg", "weights": "random", "devices": ["cpu"], "interim_interval_ms": 500},
        {
            "spec": "whole-segments",
            "name": "seg-final-only",
            "weights": "random",
            "devices": ["cpu"],
            "interim_interval_ms": 0,
        },
    ]
    with running_server({"models": models}, extra_plugins=[("whole_segments", Plugin())]) as s:
        yield s


def _stream(address, model, audio):
    def requests():
        cfg = pb.RecognitionConfig(encoding=pb.RecognitionConfig.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE)
        yield pb.StreamingRecognizeRequest(
            streaming_config=pb.StreamingRecognitionConfig(model=model, config=cfg, interim_results=True)
        )
        for i in range(0, len(audio), 1600):
            yield pb.StreamingRecognizeRequest(audio_content=audio[i : i + 1600])

    with grpc.insecure_channel(address) as channel:
        return [
            r
            for m in pb_grpc.SpeechRecognitionStub(channel).StreamingRecognize(requests(), timeout=120)
            for r in m.results
        ]


def _span(samples, start_ms, end_ms):
    return samples[round(start_ms * RATE / 1000) : round(end_ms * RATE / 1000)]


def test_interims_re_decode_the_open_segment_and_finals_decode_it_whole(server):
    audio = linear16(clip(seed=9, utterances=2))
    samples = from_linear16(audio)
    results = _stream(server.address, "seg", audio)
    finals = [r for r in results if r.is_final]
    interims = [r for r in results if not r.is_final]
    assert [r.segment_index for r in finals] == [0, 1]
    for r in finals:
        assert r.alternatives[0].transcript == hf_decode(_span(samples, r.result_start_ms, r.result_end_ms))
    assert interims, "the open segment was re-decoded"
    for r in interims:  # each interim is the decode of its segment so far
        assert r.result_start_ms == finals[r.segment_index].result_start_ms
        # (it may reach into the silence that then ends the segment: the final is cut before it)
        assert r.result_end_ms > r.result_start_ms
        assert r.alternatives[0].transcript == hf_decode(_span(samples, r.result_start_ms, r.result_end_ms))
    # Interims of a segment come before its final.
    order = [(r.segment_index, r.is_final) for r in results]
    assert order == sorted(order)


def test_no_interim_results_with_an_interval_of_0(server):
    WholeSegments.calls.clear()
    results = _stream(server.address, "seg-final-only", linear16(clip(seed=9, utterances=2)))
    assert [r.is_final for r in results] == [True, True]
    assert sum(WholeSegments.calls) == 2  # one pass per segment, nothing else


def test_model_info_says_how_it_streams(server):
    from modelplex_client import Client
    from modelplex_client.pb import speech_recognition_pb2

    with Client(server.address) as client:
        info = speech_recognition_pb2.SpeechRecognitionInfo()
        client.get_model("seg").task_info.Unpack(info)
    assert not info.streaming and info.interim_interval_ms == 500 and info.sample_rate_hz == 16000
    assert np.isclose(info.max_segment_ms, 30_000) and info.vad in ("silero", "energy")
    assert info.decoder == ""  # a whole-segment model decodes itself

"""SpeechRecognition over real gRPC with a tiny random Wav2Vec2ForCTC saved with its processor and
loaded by the speech plugin through from_pretrained: each final equals the offline decode of its
segment for any chunk size; 8 and 44.1 kHz streams equal in-process resampling; interim results
arrive while the audio is still coming; concurrent streams equal lone ones; cancelling frees the
session."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
import torch
import torchaudio.functional as F

from modelplex.testing import running_server
from modelplex_client.pb import speech_recognition_pb2 as pb
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc
from speech_audio import RATE, clip, from_linear16, linear16, wav
from speech_models import hf_decode, w2v_model

LINEAR16 = pb.RecognitionConfig.AUDIO_ENCODING_LINEAR16
FLOAT32 = pb.RecognitionConfig.AUDIO_ENCODING_FLOAT32
FILE = pb.RecognitionConfig.AUDIO_ENCODING_FILE


@pytest.fixture(scope="module")
def server():
    with running_server({"models": [w2v_model()]}) as s:
        yield s


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.SpeechRecognitionStub(channel)


def config(rate=RATE, encoding=LINEAR16, **fields):
    return pb.RecognitionConfig(encoding=encoding, sample_rate_hz=rate, **fields)


def requests(audio: bytes, chunk_bytes: int, *, model="w2v", interim=False, cfg=None, **fields):
    yield pb.StreamingRecognizeRequest(
        streaming_config=pb.StreamingRecognitionConfig(
            model=model, config=cfg or config(), interim_results=interim, **fields
        )
    )
    for i in range(0, len(audio), chunk_bytes):
        yield pb.StreamingRecognizeRequest(audio_content=audio[i : i + chunk_bytes])


def stream(stub, audio: bytes, chunk_bytes: int, **options):
    return list(stub.StreamingRecognize(requests(audio, chunk_bytes, **options), timeout=120))


def finals(responses):
    return [r for m in responses for r in m.results if r.is_final]


def segment(samples: np.ndarray, result, rate=RATE) -> np.ndarray:
    start, end = round(result.result_start_ms * rate / 1000), round(result.result_end_ms * rate / 1000)
    return samples[start:end]


@pytest.mark.parametrize("chunk_ms", [10, 32, 100, 250, 1000])
def test_each_final_equals_the_offline_decode_of_its_segment(stub, chunk_ms):
    audio = linear16(clip(seed=0, utterances=2))
    samples = from_linear16(audio)
    got = finals(stream(stub, audio, chunk_bytes=chunk_ms * RATE // 1000 * 2))
    assert [r.segment_index for r in got] == [0, 1]  # two utterances, two segments
    assert got[0].result_end_ms <= got[1].result_start_ms
    for r in got:
        expected = hf_decode(segment(samples, r))
        assert expected, "the tiny model transcribes the segment to something"
        assert r.alternatives[0].transcript == expected


def test_segments_do_not_depend_on_the_chunk_size(stub):
    audio = linear16(clip(seed=1, utterances=2))
    spans = {
        chunk: [(r.result_start_ms, r.result_end_ms) for r in finals(stream(stub, audio, chunk))]
        for chunk in (320, 3200, 32000)
    }
    assert len(set(map(tuple, spans.values()))) == 1, spans


@pytest.mark.parametrize("rate", [8000, 44100])
def test_a_stream_at_another_rate_equals_in_process_resampling(stub, rate):
    audio = linear16(clip(seed=2, utterances=2, rate=rate))
    streamed = finals(stream(stub, audio, chunk_bytes=rate // 10 * 2, cfg=config(rate)))
    resampled = F.resample(torch.from_numpy(from_linear16(audio)), rate, RATE).numpy()
    offline = stub.Recognize(
        pb.RecognizeRequest(model="w2v", config=config(RATE, FLOAT32), audio_content=resampled.astype("<f4").tobytes())
    )
    assert len(streamed) == 2
    assert [(r.result_start_ms, r.result_end_ms) for r in streamed] == [
        (r.result_start_ms, r.result_end_ms) for r in offline.results
    ]
    for got, want in zip(streamed, offline.results, strict=True):
        assert got.alternatives[0].transcript == want.alternatives[0].transcript == hf_decode(segment(resampled, got))


def test_interim_results_arrive_while_the_audio_is_still_coming(stub):
    audio = linear16(clip(seed=3, utterances=1))
    half = len(audio) // 2 // 640 * 640
    interim_seen = threading.Event()
    sent = []

    def paced():
        for i, message in enumerate(requests(audio, 640, interim=True)):
            if i and len(sent) * 640 >= half and not interim_seen.is_set():
                assert interim_seen.wait(60), "no interim result while the stream was open"
            sent.append(i)
            yield message

    events = []
    for m in stub.StreamingRecognize(paced(), timeout=120):
        for r in m.results:
            events.append((r.is_final, len(sent) * 640 < len(audio), r))
            if not r.is_final:
                interim_seen.set()
    interims = [e for e in events if not e[0]]
    assert interims and all(still_sending for _, still_sending, _ in interims[:1])
    assert events[-1][0], "the stream ends with a final result"
    first = interims[0][2]
    assert first.result_end_ms > first.result_start_ms and first.alternatives[0].transcript
    # Interim transcripts grow window by window; the final re-decodes the whole segment.
    ends = [r.result_end_ms for _, _, r in interims]
    assert ends == sorted(ends)


def test_eight_concurrent_streams_each_get_what_they_get_alone(stub):
    clips = [linear16(clip(seed=10 + i, utterances=1)) for i in range(8)]
    alone = [[r.alternatives[0].transcript for r in finals(stream(stub, c, 3200, interim=True))] for c in clips]
    together: list = [None] * 8

    def run(i):
        together[i] = [r.alternatives[0].transcript for r in finals(stream(stub, clips[i], 3200, interim=True))]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == alone
    assert all(len(t) == 1 and t[0] for t in alone)


def _wait_idle(server, name="w2v", timeout=30.0):
    runtime = server.server.registry.describe(name).runtime
    end = time.monotonic() + timeout  # a bound against hanging, not a measure of speed
    while runtime.active():
        assert time.monotonic() < end, "the cancelled stream still holds its session"
        time.sleep(0.01)
    return runtime


def _endless(model="w2v"):
    yield pb.StreamingRecognizeRequest(
        streaming_config=pb.StreamingRecognitionConfig(model=model, config=config(), interim_results=True)
    )
    while True:
        yield pb.StreamingRecognizeRequest(audio_content=linear16(clip(seed=4, utterances=1))[:32000])


def test_cancelling_a_stream_frees_its_session(server, stub):
    call = stub.StreamingRecognize(_endless(), timeout=120)
    first = next(call)
    assert first.results
    runtime = server.server.registry.describe("w2v").runtime
    assert runtime.active() == 1
    call.cancel()
    _wait_idle(server)
    assert finals(stream(stub, linear16(clip(seed=0, utterances=1)), 3200))  # and it still serves


def test_dropping_the_connection_frees_its_session(server):
    channel = grpc.insecure_channel(server.address)
    call = pb_grpc.SpeechRecognitionStub(channel).StreamingRecognize(_endless(), timeout=120)
    next(call)
    channel.close()
    _wait_idle(server)


def test_single_utterance_ends_after_the_first_final(stub):
    responses = stream(stub, linear16(clip(seed=5, utterances=2)), 3200, single_utterance=True)
    last = responses[-1]
    assert last.speech_event_type == pb.StreamingRecognizeResponse.SPEECH_EVENT_TYPE_END_OF_SINGLE_UTTERANCE
    assert [r.is_final for r in last.results] == [True]
    assert len(finals(responses)) == 1


def test_word_time_offsets_lie_inside_their_result(stub):
    got = finals(stream(stub, linear16(clip(seed=6, utterances=2)), 3200, cfg=config(enable_word_time_offsets=True)))
    for r in got:
        words = r.alternatives[0].words
        assert " ".join(w.word for w in words) == r.alternatives[0].transcript
        times = [t for w in words for t in (w.start_ms, w.end_ms)]
        assert times == sorted(times)
        assert r.result_start_ms <= times[0] and times[-1] <= r.result_end_ms


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_recognize_a_file_equals_recognizing_its_samples(stub, fmt):
    samples = from_linear16(linear16(clip(seed=7, utterances=2)))
    raw = stub.Recognize(pb.RecognizeRequest(model="w2v", config=config(), audio_content=linear16(samples)))
    filed = stub.Recognize(
        pb.RecognizeRequest(model="w2v", config=config(0, FILE), audio_content=wav(samples, fmt=fmt), request_id="r")
    )
    assert len(raw.results) == 2 and filed.request_id == "r"
    assert [r.alternatives[0].transcript for r in filed.results] == [r.alternatives[0].transcript for r in raw.results]
    assert filed.audio_duration_ms == pytest.approx(len(samples) / RATE * 1000)


def test_stereo_is_mixed_down(stub):
    mono = from_linear16(linear16(clip(seed=8, utterances=1)))
    stereo = np.stack([mono, mono], axis=1).reshape(-1)
    one = stub.Recognize(pb.RecognizeRequest(model="w2v", config=config(), audio_content=linear16(mono)))
    two = stub.Recognize(
        pb.RecognizeRequest(model="w2v", config=config(audio_channel_count=2), audio_content=linear16(stereo))
    )
    assert [r.alternatives[0].transcript for r in two.results] == [r.alternatives[0].transcript for r in one.results]

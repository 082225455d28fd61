"""Bad input to SpeechRecognition gets a precise status and message, and the server keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from modelplex.testing import running_server
from modelplex_client.pb import speech_recognition_pb2 as pb
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc
from speech_audio import RATE, clip, linear16
from speech_models import w2v_model

LINEAR16 = pb.RecognitionConfig.AUDIO_ENCODING_LINEAR16
FLOAT32 = pb.RecognitionConfig.AUDIO_ENCODING_FLOAT32
FILE = pb.RecognitionConfig.AUDIO_ENCODING_FILE
AUDIO = linear16(clip(seed=0, utterances=1))


@pytest.fixture(scope="module")
def server():
    models = [
        w2v_model(),
        w2v_model("w2v-limits", max_audio_s=2.0, max_chunk_bytes=4096),
        {"spec": "tiny-gpt2", "name": "gpt", "weights": "random", "devices": ["cpu"]},
    ]
    with running_server({"models": models, "server": {"max_message_mb": 1}}) as s:
        yield s


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.SpeechRecognitionStub(channel)


@pytest.fixture(autouse=True)
def still_serving(stub):
    yield
    good = stub.Recognize(pb.RecognizeRequest(model="w2v", config=config(), audio_content=AUDIO), timeout=60)
    assert len(good.results) == 1


def config(rate=RATE, encoding=LINEAR16, **fields):
    return pb.RecognitionConfig(encoding=encoding, sample_rate_hz=rate, **fields)


def first(model="w2v", **fields):
    cfg = fields.pop("cfg", None) or config()
    return pb.StreamingRecognizeRequest(
        streaming_config=pb.StreamingRecognitionConfig(model=model, config=cfg, **fields)
    )


def audio(data=AUDIO[:6400]):
    return pb.StreamingRecognizeRequest(audio_content=data)


def fails(stub, messages, code, *words):
    with pytest.raises(grpc.RpcError) as e:
        list(stub.StreamingRecognize(iter(messages), timeout=60))
    assert e.value.code() == code, e.value.details()
    for w in words:
        assert w in e.value.details()


def recognize_fails(stub, code, *words, **request):
    request.setdefault("model", "w2v")
    with pytest.raises(grpc.RpcError) as e:
        stub.Recognize(pb.RecognizeRequest(**request), timeout=60)
    assert e.value.code() == code, e.value.details()
    for w in words:
        assert w in e.value.details()


INVALID = grpc.StatusCode.INVALID_ARGUMENT


def test_audio_before_the_config(stub):
    fails(stub, [audio(), first()], INVALID, "first message must carry streaming_config")


def test_a_second_config(stub):
    fails(stub, [first(), audio(), first()], INVALID, "streaming_config may only be sent once")


@pytest.mark.parametrize("encoding", [pb.RecognitionConfig.AUDIO_ENCODING_UNSPECIFIED, 42])
def test_an_unknown_encoding(stub, encoding):
    fails(stub, [first(cfg=config(encoding=encoding)), audio()], INVALID, "encoding", "LINEAR16")
    recognize_fails(stub, INVALID, "encoding", config=config(encoding=encoding), audio_content=AUDIO)


def test_a_file_encoding_in_a_stream(stub):
    fails(stub, [first(cfg=config(0, FILE)), audio()], INVALID, "Recognize")


def test_linear16_with_an_odd_byte_count(stub):
    fails(stub, [first(), audio(), audio(b"\x01\x02\x03")], INVALID, "3 bytes", "LINEAR16")
    recognize_fails(stub, INVALID, "whole number", config=config(), audio_content=AUDIO[:-1])


def test_float32_with_a_partial_sample_or_nan(stub):
    fails(stub, [first(cfg=config(encoding=FLOAT32)), audio(b"\x00" * 6)], INVALID, "6 bytes")
    nan = np.array([0.0, np.nan], dtype="<f4").tobytes()
    fails(stub, [first(cfg=config(encoding=FLOAT32)), audio(nan)], INVALID, "NaN")


@pytest.mark.parametrize("rate", [0, -16000, 1000, 10_000_000, 16001])
def test_a_sample_rate_of_zero_or_absurd(stub, rate):
    fails(stub, [first(cfg=config(rate)), audio()], INVALID, "sample_rate_hz")
    recognize_fails(stub, INVALID, "sample_rate_hz", config=config(rate), audio_content=AUDIO)


def test_too_many_channels(stub):
    fails(stub, [first(cfg=config(audio_channel_count=9)), audio()], INVALID, "audio_channel_count")


def test_an_empty_stream(stub):
    fails(stub, [], INVALID, "empty")
    fails(stub, [first()], INVALID, "without audio")
    recognize_fails(stub, INVALID, "empty", config=config(), audio_content=b"")


def test_a_stream_over_the_maximum_duration(stub):
    long = linear16(np.zeros(RATE * 3, dtype=np.float32))
    chunks = [audio(long[i : i + 4000]) for i in range(0, len(long), 4000)]
    fails(stub, [first("w2v-limits"), *chunks], grpc.StatusCode.OUT_OF_RANGE, "longer than", "2 s")
    recognize_fails(
        stub, grpc.StatusCode.OUT_OF_RANGE, "longer than", model="w2v-limits", config=config(), audio_content=long
    )


def test_an_oversized_audio_message(stub):
    fails(stub, [first("w2v-limits"), audio(b"\x00" * 6000)], grpc.StatusCode.RESOURCE_EXHAUSTED, "6000 bytes")


def test_a_message_over_the_servers_limit(stub):
    fails(stub, [first(), audio(b"\x00" * (1 << 20) * 2)], grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_a_file_that_is_not_audio(stub):
    recognize_fails(
        stub, INVALID, "cannot read the audio file", config=config(0, FILE), audio_content=b"not audio" * 100
    )


def test_a_model_of_another_task(stub):
    fails(stub, [first("gpt"), audio()], INVALID, "gpt")
    recognize_fails(stub, INVALID, "gpt", model="gpt", config=config(), audio_content=AUDIO)


def test_an_unknown_model(stub):
    fails(stub, [first("nope"), audio()], grpc.StatusCode.NOT_FOUND, "nope")


def test_an_unknown_language(stub):
    fails(stub, [first(cfg=config(language="xx")), audio()], INVALID, "language")

"""Speech recognition over the Open Inference Protocol (inference.GRPCInferenceService): the
tiny Wav2Vec2ForCTC answers ModelInfer with float samples (at the model's rate or another) or a
WAV/FLAC file, with the same finals as the typed Recognize of the same audio; bad tensors get
INVALID_ARGUMENT naming the problem, and the server serves on."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
import torchaudio.functional as F

from modelplex.server.oip_tensors import serialize_bytes
from modelplex.testing import running_server
from modelplex_client.pb import grpc_predict_v2_pb2 as oip_pb
from modelplex_client.pb import grpc_predict_v2_pb2_grpc as oip_grpc
from modelplex_client.pb import speech_recognition_pb2 as pb
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc
from oip_tensors import outputs
from speech_audio import RATE, clip, from_linear16, linear16, wav
from speech_models import w2v_model

SAMPLES = from_linear16(linear16(clip(seed=0, utterances=2)))  # exactly what a 16-bit file holds


@pytest.fixture(scope="module")
def server():
    with running_server({"models": [w2v_model()]}) as s:
        yield s


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def oip(channel):
    return oip_grpc.GRPCInferenceServiceStub(channel)


def typed(channel, audio: bytes, encoding, rate: int = 0) -> pb.RecognizeResponse:
    config = pb.RecognitionConfig(encoding=encoding, sample_rate_hz=rate, enable_word_time_offsets=True)
    stub = pb_grpc.SpeechRecognitionStub(channel)
    return stub.Recognize(pb.RecognizeRequest(model="w2v", config=config, audio_content=audio), timeout=120)


def request(samples=None, rate=None, file=None, raw=True, model="w2v", **parameters) -> oip_pb.ModelInferRequest:
    message = oip_pb.ModelInferRequest(model_name=model, id="r1")
    if samples is not None:
        tensor = message.inputs.add(name="audio", datatype="FP32", shape=[len(samples)])
        if raw:
            message.raw_input_contents.append(np.asarray(samples, dtype="<f4").tobytes())
        else:
            tensor.contents.fp32_contents.extend(np.asarray(samples, dtype=np.float32).tolist())
    if rate is not None:
        tensor = message.inputs.add(name="sample_rate", datatype="INT32", shape=[1])
        if raw:
            message.raw_input_contents.append(np.array([rate], dtype="<i4").tobytes())
        else:
            tensor.contents.int_contents.append(rate)
    if file is not None:
        tensor = message.inputs.add(name="audio_file", datatype="BYTES", shape=[1])
        if raw:
            message.raw_input_contents.append(serialize_bytes([file]))
        else:
            tensor.contents.bytes_contents.append(file)
    for name, value in parameters.items():
        message.parameters[name].string_param = value
    return message


def assert_same(got: dict, expected: pb.RecognizeResponse) -> None:
    results = expected.results
    assert len(results) == 2  # two utterances
    transcripts = [r.alternatives[0].transcript for r in results]
    assert got["transcript"].tolist() == [" ".join(t for t in transcripts if t).encode()]
    assert got["segment_transcripts"].tolist() == [t.encode() for t in transcripts]
    times = [[r.result_start_ms, r.result_end_ms] for r in results]
    np.testing.assert_allclose(np.asarray(got["segment_times_ms"], dtype=np.float64), times, rtol=1e-6)
    words = [w for r in results for w in r.alternatives[0].words]
    assert got["words"].tolist() == [w.word.encode() for w in words]
    word_times = np.asarray(got["word_times_ms"], dtype=np.float64).reshape(-1, 2)
    np.testing.assert_allclose(word_times, [[w.start_ms, w.end_ms] for w in words], rtol=1e-6)
    assert float(np.asarray(got["audio_duration_ms"])[0]) == pytest.approx(expected.audio_duration_ms, rel=1e-6)


def test_metadata_declares_the_tensors(oip):
    meta = oip.ModelMetadata(oip_pb.ModelMetadataRequest(name="w2v"), timeout=30)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("audio", "FP32", [-1]),
        ("sample_rate", "INT32", [1]),
        ("audio_file", "BYTES", [1]),
    ]
    assert [t.name for t in meta.outputs] == [
        "transcript",
        "segment_transcripts",
        "segment_times_ms",
        "words",
        "word_times_ms",
        "audio_duration_ms",
    ]


@pytest.mark.parametrize("raw", [True, False])
def test_samples_at_the_models_rate_give_recognizes_finals(channel, oip, raw):
    expected = typed(channel, SAMPLES.astype("<f4").tobytes(), pb.RecognitionConfig.AUDIO_ENCODING_FLOAT32, RATE)
    got = outputs(oip.ModelInfer(request(SAMPLES, raw=raw), timeout=120))
    assert any(w for w in got["words"].tolist())  # the tiny model transcribes something
    assert_same(got, expected)
    with_rate = outputs(oip.ModelInfer(request(SAMPLES, rate=RATE, raw=raw), timeout=120))
    assert with_rate["transcript"].tolist() == got["transcript"].tolist()


def test_samples_at_another_rate_are_resampled_as_recognize_does(channel, oip):
    at_8k = F.resample(torch.from_numpy(SAMPLES), RATE, 8000).numpy()
    expected = typed(channel, at_8k.astype("<f4").tobytes(), pb.RecognitionConfig.AUDIO_ENCODING_FLOAT32, 8000)
    assert_same(outputs(oip.ModelInfer(request(at_8k, rate=8000), timeout=120)), expected)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_a_file_gives_recognizes_finals(channel, oip, fmt):
    data = wav(SAMPLES, fmt=fmt)
    expected = typed(channel, data, pb.RecognitionConfig.AUDIO_ENCODING_FILE)
    assert_same(outputs(oip.ModelInfer(request(file=data), timeout=120)), expected)
    assert_same(outputs(oip.ModelInfer(request(file=data, raw=False), timeout=120)), expected)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: request(), "exactly one of the inputs 'audio'"),
        (lambda: request(SAMPLES[:1600], file=wav(SAMPLES[:1600])), "exactly one of the inputs 'audio'"),
        (lambda: request(file=wav(SAMPLES[:1600]), rate=RATE), "sample_rate goes with audio only"),
        (lambda: request(np.zeros(0, np.float32)), "audio holds no samples"),
        (lambda: request(np.full(1600, np.nan, np.float32)), "NaN or infinite"),
        (lambda: request(SAMPLES[:1600], rate=0), "sample"),
        (lambda: request(SAMPLES[:1600], rate=10_000_000), "sample"),
        (lambda: request(file=b"not audio at all"), "cannot read the audio file"),
        (lambda: request(file=b""), "the audio file is empty"),
        (lambda: request(SAMPLES[:1600], language="fr"), "does not know language 'fr'"),
        (lambda: request(SAMPLES[:1600], speed="2"), "unknown parameter 'speed'"),
    ],
)
def test_bad_tensors_are_invalid_argument_and_the_server_serves_on(oip, make, words):
    with pytest.raises(grpc.RpcError) as e:
        oip.ModelInfer(make(), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert words in e.value.details()
    assert outputs(oip.ModelInfer(request(SAMPLES), timeout=120))["segment_transcripts"].size == 2


def test_wrong_datatype_and_shape_are_refused(oip):
    message = oip_pb.ModelInferRequest(model_name="w2v")
    message.inputs.add(name="audio", datatype="INT16", shape=[4]).contents.int_contents.extend([1, 2, 3, 4])
    with pytest.raises(grpc.RpcError) as e:
        oip.ModelInfer(message, timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'audio' must be FP32" in e.value.details()
    message = oip_pb.ModelInferRequest(model_name="w2v")
    message.inputs.add(name="audio", datatype="FP32", shape=[2, 2]).contents.fp32_contents.extend([0.0] * 4)
    with pytest.raises(grpc.RpcError) as e:
        oip.ModelInfer(message, timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "must have shape [-1]" in e.value.details()


def test_a_clip_over_the_maximum_is_out_of_range():
    with running_server({"models": [w2v_model("short", max_audio_s=1.0)]}) as s, grpc.insecure_channel(s.address) as c:
        with pytest.raises(grpc.RpcError) as e:
            oip_grpc.GRPCInferenceServiceStub(c).ModelInfer(request(SAMPLES, model="short"), timeout=60)
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE and "longer than" in e.value.details()

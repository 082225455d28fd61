"""SpeechSynthesis over real gRPC with a tiny random Tacotron 2 saved in torchaudio's layout
and loaded by the tts plugin: the streamed audio equals the in-process synthesis of the same
sentences with the same joins; first audio comes before the last sentence starts; a cancelled
call stops at its next sentence; concurrent calls share steps; bad input gets its status."""

from __future__ import annotations

import io
import threading

import grpc
import numpy as np
import pytest

from modelplex.tasks.speech_synthesis.settings import SpeechSynthesisSettings
from modelplex.testing import running_server
from modelplex_client.pb import speech_synthesis_pb2 as pb
from modelplex_client.pb import speech_synthesis_pb2_grpc as pb_grpc
from oip_tensors import outputs as _oip_outputs
from probe_plugin import PLUGINS as PROBE_PLUGINS
from probe_plugin import probe_model
from tts_models import RECORDERS, load_in_process, offline, recorded_plugin, save_tacotron, tts_model

TEXT = "Hello there, 42 times. Café naïve 😀! The last sentence is here."
PAUSE_MS = 40


@pytest.fixture(scope="module")
def tacotron(tmp_path_factory):
    return save_tacotron(tmp_path_factory.mktemp("tts") / "tacotron2.pt")


@pytest.fixture(scope="module")
def server(tacotron):
    models = [
        {**tts_model("tts", "tacotron2-griffinlim", tacotron), "sentence_pause_ms": PAUSE_MS, "max_text_chars": 300},
        {**tts_model("recorded", "recorded-tts", tacotron), "sentence_pause_ms": PAUSE_MS},
        tts_model("fixed-rate", "fixed-rate-tts", tacotron),
        probe_model("classifier"),
    ]
    with running_server({"models": models}, extra_plugins=[*recorded_plugin(), *PROBE_PLUGINS]) as s:
        yield s


@pytest.fixture(scope="module")
def reference(tacotron):
    return load_in_process("tacotron2-griffinlim", tacotron)


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.SpeechSynthesisStub(channel)


def _floats(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


@pytest.mark.parametrize("rate", [None, 16000])
def test_streamed_audio_equals_the_in_process_synthesis(stub, reference, rate):
    request = pb.SynthesizeRequest(model="tts", text=TEXT, encoding=pb.SYNTHESIS_ENCODING_FLOAT32, request_id="r7")
    if rate is not None:
        request.sample_rate_hz = rate
    messages = list(stub.Synthesize(request, timeout=120))
    kinds = [m.WhichOneof("content") for m in messages]
    assert kinds[0] == "format" and kinds[-1] == "summary" and set(kinds[1:-1]) == {"audio"}
    assert all(m.request_id == "r7" and m.model == "tts" for m in messages)
    fmt = messages[0].format
    assert fmt.sample_rate_hz == (rate or 22050) and fmt.model_sample_rate_hz == 22050 and fmt.channels == 1
    chunks = [m.audio for m in messages[1:-1]]

    settings = SpeechSynthesisSettings(sentence_pause_ms=PAUSE_MS)
    expected = offline(reference, TEXT, encoding="float32", sample_rate=rate, settings=settings)
    assert [(c.text_start, c.text_end, c.sentence_index, c.sentence_end) for c in chunks] == [
        (c.start, c.end, c.sentence_index, c.sentence_end) for c in expected.chunks
    ]
    got = _floats(b"".join(c.audio_content for c in chunks))
    np.testing.assert_array_equal(got, _floats(expected.audio))
    # Each sentence is streamed in several pieces (3 per sentence here), and the spans are the text's.
    assert [TEXT[c.text_start : c.text_end] for c in chunks if c.sentence_end] == [
        "Hello there, 42 times.",
        "Café naïve 😀!",
        "The last sentence is here.",
    ]
    assert len(chunks) > 3
    assert [c.sample_offset for c in chunks] == list(np.cumsum([0] + [len(c.audio_content) // 4 for c in chunks[:-1]]))
    summary = messages[-1].summary
    assert summary.samples == len(got) and summary.audio_seconds == pytest.approx(len(got) / fmt.sample_rate_hz)
    assert summary.sentences == 3 and summary.characters_dropped == 1 and summary.dropped_characters == "😀"
    assert summary.characters_normalized == 2 + 2  # "42", and "é" "ï"
    assert summary.processing_seconds > 0 and 0 < summary.time_to_first_audio_ms <= summary.processing_seconds * 1000


def test_linear16_is_the_float_audio_quantised(stub):
    def audio(encoding):
        request = pb.SynthesizeRequest(model="tts", text="One. Two.", encoding=encoding)
        return b"".join(m.audio.audio_content for m in stub.Synthesize(request, timeout=120))

    floats = _floats(audio(pb.SYNTHESIS_ENCODING_FLOAT32))
    ints = np.frombuffer(audio(pb.SYNTHESIS_ENCODING_UNSPECIFIED), dtype="<i2")
    np.testing.assert_array_equal(ints, np.round(np.clip(floats, -1, 1) * 32767).astype(np.int16))


def test_synthesize_wav_is_the_streamed_audio_as_a_wav_file(stub):
    import soundfile

    for encoding, subtype in ((pb.SYNTHESIS_ENCODING_LINEAR16, "PCM_16"), (pb.SYNTHESIS_ENCODING_FLOAT32, "FLOAT")):
        stream = list(
            stub.Synthesize(pb.SynthesizeRequest(model="tts", text=TEXT, encoding=encoding, sample_rate_hz=8000))
        )
        wav = stub.SynthesizeWav(
            pb.SynthesizeWavRequest(model="tts", text=TEXT, encoding=encoding, sample_rate_hz=8000)
        )
        data, rate = soundfile.read(io.BytesIO(wav.wav), dtype="float32")
        info = soundfile.info(io.BytesIO(wav.wav))
        assert rate == 8000 and info.subtype == subtype and info.channels == 1
        assert len(data) == wav.summary.samples == stream[-1].summary.samples
        streamed = b"".join(m.audio.audio_content for m in stream)
        dtype = "<i2" if encoding == pb.SYNTHESIS_ENCODING_LINEAR16 else "<f4"
        scale = 32768.0 if dtype == "<i2" else 1.0
        np.testing.assert_array_equal(data, np.frombuffer(streamed, dtype=dtype).astype("float32") / scale)


def test_first_audio_arrives_before_the_last_sentence_starts(server, stub):
    recorder = RECORDERS["recorded"]
    recorder.reset()
    gate = recorder.hold_start[2] = threading.Event()  # the third sentence waits for the client
    try:
        call = stub.Synthesize(pb.SynthesizeRequest(model="recorded", text=TEXT), timeout=120)
        for message in call:
            if message.WhichOneof("content") == "audio":
                recorder.log("client got audio")
                gate.set()
        assert message.summary.sentences == 3
    finally:
        gate.set()
        recorder.hold_start.clear()
    events = recorder.events
    assert "gave up waiting" not in events
    assert events.index("client got audio") < events.index("start sentence 2")


def test_a_cancelled_call_stops_at_its_next_sentence(server, stub):
    recorder = RECORDERS["recorded"]
    recorder.reset()
    gate = recorder.hold_start[1] = threading.Event()
    try:
        call = stub.Synthesize(pb.SynthesizeRequest(model="recorded", text=TEXT), timeout=120)
        for message in call:
            if message.WhichOneof("content") == "audio" and message.audio.sentence_end:
                break  # the whole first sentence is here; the second waits for the gate
        call.cancel()
        assert _wait_for(lambda: "waiting to start sentence 1" in recorder.events)
        gate.set()
        assert _wait_for(lambda: recorder.events.count("release") >= 2)
    finally:
        gate.set()
        recorder.hold_start.clear()
    # The second sentence was started (it was held at its start) but never the third.
    assert "start sentence 2" not in recorder.events
    with pytest.raises(grpc.RpcError) as e:
        list(call)
    assert e.value.code() == grpc.StatusCode.CANCELLED


def _wait_for(condition, timeout=60.0) -> bool:
    import time

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_concurrent_calls_share_steps_and_each_gets_its_own_audio(server, reference):
    recorder = RECORDERS["recorded"]
    recorder.reset()
    texts = ["First call, first sentence. And its second.", "Second call speaks. Then stops."]
    gate = recorder.hold_start[0] = threading.Event()  # hold the first call until both are queued
    results: dict[int, bytes] = {}

    def run(i: int) -> None:
        with grpc.insecure_channel(server.address) as channel:
            request = pb.SynthesizeRequest(model="recorded", text=texts[i], encoding=pb.SYNTHESIS_ENCODING_FLOAT32)
            stream = pb_grpc.SpeechSynthesisStub(channel).Synthesize(request, timeout=120)
            results[i] = b"".join(m.audio.audio_content for m in stream)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        # Both calls reached the lane (waiting, or joining the held step) while the first is held.
        assert _wait_for(
            lambda: "waiting to start sentence 0" in recorder.events and server.call(_in_lane(server)) == 2
        )
        gate.set()
        for t in threads:
            t.join(120)
    finally:
        gate.set()
        recorder.hold_start.clear()
    assert max(recorder.batch_sizes) == 2
    settings = SpeechSynthesisSettings(sentence_pause_ms=PAUSE_MS)
    for i, text in enumerate(texts):
        expected = offline(reference, text, encoding="float32", settings=settings)
        assert results[i] == expected.audio  # bit-identical: the decoder pads every batch to the same rows


async def _in_lane(server):  # the calls the lane knows, prepared or not, running or not
    [lane] = server.server.registry.lookup("speech_synthesis")("recorded").scheduler.lanes
    return len(lane.preparing) + len(lane.waiting) + len(lane.joining) + len(lane.running)


def test_model_info_reports_the_task(server):
    from modelplex_client import Client

    with Client(server.address, timeout=30) as client:
        info = client.get_model("tts")
    assert info.task == "speech_synthesis"
    task_info = pb.SpeechSynthesisInfo()
    assert info.task_info.Unpack(task_info)
    assert task_info.sample_rate_hz == 22050 and task_info.max_text_chars == 300
    assert task_info.description == "Tacotron 2 + Griffin-Lim" and task_info.supports_speaking_rate


@pytest.mark.parametrize(
    "fields,code,words",
    [
        ({"text": ""}, grpc.StatusCode.INVALID_ARGUMENT, "text is empty"),
        ({"text": "   \n "}, grpc.StatusCode.INVALID_ARGUMENT, "text is empty"),
        ({"text": "a" * 301}, grpc.StatusCode.INVALID_ARGUMENT, "301 characters; model 'tts' takes at most 300"),
        ({"text": "😀 🚀 ✨"}, grpc.StatusCode.INVALID_ARGUMENT, "nothing model 'tts' can voice"),
        ({"text": "Hi.", "encoding": 99}, grpc.StatusCode.INVALID_ARGUMENT, "encoding 99 is not one of"),
        ({"text": "Hi.", "sample_rate_hz": 0}, grpc.StatusCode.INVALID_ARGUMENT, "sample_rate_hz must be between"),
        ({"text": "Hi.", "sample_rate_hz": 10**9}, grpc.StatusCode.INVALID_ARGUMENT, "got 1000000000"),
        ({"text": "Hi.", "speaking_rate": 0.2}, grpc.StatusCode.INVALID_ARGUMENT, "between 0.25 and 4.0, got 0.2"),
        ({"text": "Hi.", "speaking_rate": 4.5}, grpc.StatusCode.INVALID_ARGUMENT, "between 0.25 and 4.0, got 4.5"),
        ({"text": "Hi.", "speaking_rate": 0}, grpc.StatusCode.INVALID_ARGUMENT, "between 0.25 and 4.0, got 0"),
        ({"text": "Hi.", "speaking_rate": -1}, grpc.StatusCode.INVALID_ARGUMENT, "between 0.25 and 4.0, got -1"),
        ({"text": "Hi.", "speaking_rate": float("nan")}, grpc.StatusCode.INVALID_ARGUMENT, "got nan"),
        ({"text": "Hi.", "speaking_rate": float("inf")}, grpc.StatusCode.INVALID_ARGUMENT, "got inf"),
        (
            {"text": "Hi.", "speaking_rate": 1.5, "model": "fixed-rate"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "model 'fixed-rate' does not support speaking_rate",
        ),
        ({"text": "Hi.", "model": "classifier"}, grpc.StatusCode.INVALID_ARGUMENT, "image_classification"),
        ({"text": "Hi.", "model": "nope"}, grpc.StatusCode.NOT_FOUND, "nope"),
    ],
)
def test_bad_input_gets_its_status_and_the_server_keeps_serving(stub, fields, code, words):
    request = {"model": "tts", **fields}
    for call in (
        lambda: list(stub.Synthesize(pb.SynthesizeRequest(**request), timeout=60)),
        lambda: stub.SynthesizeWav(pb.SynthesizeWavRequest(**request), timeout=60),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == code, e.value.details()
        assert words in e.value.details()
    assert list(stub.Synthesize(pb.SynthesizeRequest(model="tts", text="Still here.")))[-1].summary.samples > 0


def _sentence_samples(messages) -> list[int]:  # model-rate samples per voiced sentence, pauses left out
    chunks = [m.audio for m in messages if m.WhichOneof("content") == "audio"]
    per: dict[int, int] = {}
    for c in chunks:
        per[c.sentence_index] = per.get(c.sentence_index, 0) + len(c.audio_content) // 4
    counts = list(per.values())
    pause = round(PAUSE_MS * 22050 / 1000)
    return [n - pause for n in counts[:-1]] + counts[-1:]


@pytest.mark.parametrize("speaking_rate", [0.25, 0.5, 0.8, 1.3, 2.0, 4.0])
def test_a_speaking_rate_stretches_every_sentence_and_streams_what_it_synthesizes_in_process(
    stub, reference, speaking_rate
):
    """Rate r stretches each sentence's T decoded frames to max(1, floor(T / r + 1/2)) frames
    of 256 samples (Griffin-Lim's hop), in pieces while it decodes; the pauses stay as they are."""
    from modelplex.tasks.speech_synthesis import SynthesisOptions

    def synthesize(rate=None):
        request = pb.SynthesizeRequest(model="tts", text=TEXT, encoding=pb.SYNTHESIS_ENCODING_FLOAT32)
        if rate is not None:
            request.speaking_rate = rate
        return list(stub.Synthesize(request, timeout=120))

    plain = _sentence_samples(synthesize())
    assert all(n % 256 == 0 for n in plain)
    decoded = [n // 256 for n in plain]  # T of each sentence (24 here: the decoder's cap)
    messages = synthesize(speaking_rate)
    stretched = _sentence_samples(messages)
    r = float(np.float32(speaking_rate))  # what the server got: the field is a float
    assert stretched == [max(1, int(np.floor(t / r + 0.5))) * 256 for t in decoded]
    assert len([m for m in messages if m.WhichOneof("content") == "audio"]) >= 3

    settings = SpeechSynthesisSettings(sentence_pause_ms=PAUSE_MS)
    expected = offline(
        reference, TEXT, encoding="float32", settings=settings, options=SynthesisOptions(speaking_rate=r)
    )
    got = b"".join(m.audio.audio_content for m in messages if m.WhichOneof("content") == "audio")
    np.testing.assert_array_equal(_floats(got), _floats(expected.audio))
    assert messages[-1].summary.samples == len(got) // 4 == sum(stretched) + 2 * round(PAUSE_MS * 22050 / 1000)


def _oip_request(text: bytes, **inputs) -> object:
    from modelplex_client.pb import grpc_predict_v2_pb2 as oip

    request = oip.ModelInferRequest(model_name="tts", id="o1")
    request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(text)
    if "rate" in inputs:
        request.inputs.add(name="sample_rate", datatype="INT32", shape=[1]).contents.int_contents.append(inputs["rate"])
    if "speed" in inputs:
        speed = request.inputs.add(name="speaking_rate", datatype="FP32", shape=[1])
        speed.contents.fp32_contents.append(inputs["speed"])
    return request


@pytest.mark.parametrize("inputs", [{}, {"rate": 16000, "speed": 2.0}])
def test_oip_infer_and_stream_infer_give_the_typed_streams_audio(server, stub, inputs):
    """ModelInfer answers with the whole audio, ModelStreamInfer with its chunks as they come;
    both equal the typed Synthesize stream of the same text, rate and speaking rate."""
    from modelplex_client.pb import grpc_predict_v2_pb2_grpc as oip_grpc

    typed = pb.SynthesizeRequest(model="tts", text=TEXT, encoding=pb.SYNTHESIS_ENCODING_FLOAT32)
    if "rate" in inputs:
        typed.sample_rate_hz, typed.speaking_rate = inputs["rate"], inputs["speed"]
    messages = list(stub.Synthesize(typed, timeout=120))
    expected = _floats(b"".join(m.audio.audio_content for m in messages[1:-1]))
    rate = messages[0].format.sample_rate_hz

    with grpc.insecure_channel(server.address) as channel:
        oip = oip_grpc.GRPCInferenceServiceStub(channel)
        from modelplex_client.pb import grpc_predict_v2_pb2 as oip_pb

        meta = oip.ModelMetadata(oip_pb.ModelMetadataRequest(name="tts"), timeout=30)
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("text", "BYTES", [1]),
            ("sample_rate", "INT32", [1]),
            ("speaking_rate", "FP32", [1]),
        ]
        assert [(t.name, t.datatype) for t in meta.outputs] == [("audio", "FP32"), ("sample_rate", "INT32")]
        whole = _oip_outputs(oip.ModelInfer(_oip_request(TEXT.encode(), **inputs), timeout=120))
        np.testing.assert_array_equal(whole["audio"], expected)
        assert whole["sample_rate"].tolist() == [rate]

        answers = list(oip.ModelStreamInfer(iter([_oip_request(TEXT.encode(), **inputs)]), timeout=120))
    assert not any(a.error_message for a in answers)
    chunks = [_oip_outputs(a.infer_response) for a in answers]
    assert len(chunks) == len(messages) - 2 >= 3  # one response per typed chunk, a sentence or a piece
    np.testing.assert_array_equal(np.concatenate([c["audio"] for c in chunks]), expected)
    assert chunks[0]["sample_rate"].tolist() == [rate] and all("sample_rate" not in c for c in chunks[1:])
    finals = [a.infer_response.parameters["triton_final_response"].bool_param for a in answers]
    assert finals == [False] * (len(answers) - 1) + [True]


@pytest.mark.parametrize(
    "request_,words",
    [
        (lambda: _oip_request(b""), "text is empty"),
        (lambda: _oip_request(b"\xff\xfe"), "'text' is not valid UTF-8"),
        (lambda: _oip_request(b"Hi.", rate=0), "sample_rate_hz must be between"),
        (lambda: _oip_request(b"Hi.", speed=9.0), "speaking_rate must be between 0.25 and 4.0"),
        (lambda: _oip_request("😀 🚀".encode()), "nothing model 'tts' can voice"),
    ],
)
def test_oip_bad_input_is_invalid_argument(server, request_, words):
    from modelplex_client.pb import grpc_predict_v2_pb2_grpc as oip_grpc

    with grpc.insecure_channel(server.address) as channel:
        oip = oip_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            oip.ModelInfer(request_(), timeout=60)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in e.value.details()
        [answer] = list(oip.ModelStreamInfer(iter([request_()]), timeout=60))
        assert answer.error_message.startswith("INVALID_ARGUMENT: ") and words in answer.error_message
        assert _oip_outputs(oip.ModelInfer(_oip_request(b"Still here."), timeout=60))["audio"].size > 0

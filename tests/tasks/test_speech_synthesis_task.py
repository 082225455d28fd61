"""The speech-synthesis task on its own: sentence splitting, the joins, the streaming resampler,
the encodings and WAV files, and the runtime over real gRPC with a pure sine-wave model whose
audio is known in closed form (so the joins are checked against the signal, not against
themselves): unloading mid-stream, deadlines, backpressure and the queue bound."""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from modelplex import LoadContext, ModelSpec, Task, hookimpl
from modelplex.tasks.speech_synthesis import AudioPiece, PreparedText, SpeechSynthesizer, SynthesisOptions
from modelplex.tasks.speech_synthesis.audio import PieceJoiner, StreamingResampler, encode, wav_file
from modelplex.tasks.speech_synthesis.synth import FADE_MS
from modelplex.tasks.speech_synthesis.text import split_text
from modelplex.testing import running_server
from modelplex_client.pb import speech_synthesis_pb2 as pb
from modelplex_client.pb import speech_synthesis_pb2_grpc as pb_grpc


def test_sentences_keep_their_spans_and_titles_do_not_end_them():
    text = 'Mr. Smith met J. R. Doe at 5 p.m. today!  Really?\nA new line. "Quoted." End'
    segments = split_text(text, 200)
    assert [s.text for s in segments] == [
        "Mr. Smith met J. R. Doe at 5 p.m. today!",
        "Really?",
        "A new line.",
        '"Quoted."',
        "End",
    ]
    assert all(text[s.start : s.end] == s.text for s in segments)


def test_long_sentences_are_cut_at_clauses_then_words_then_anywhere():
    text = "one two three, four five six; seven eight nine ten eleven twelve " + "x" * 30
    segments = split_text(text, 20)
    assert all(len(s.text) <= 20 for s in segments)
    assert [s.text for s in segments][:4] == [
        "one two three,",
        "four five six;",
        "seven eight nine ten",
        "eleven twelve",
    ]
    assert "".join(s.text for s in segments[4:]) == "x" * 30
    assert all(text[s.start : s.end] == s.text for s in segments)
    assert split_text("   ", 10) == [] and split_text("", 10) == []


def _sine(n: int, start: int = 0, rate: int = 16000, hz: float = 440.0) -> torch.Tensor:
    t = torch.arange(start, start + n, dtype=torch.float64) / rate
    return (0.5 * torch.sin(2 * math.pi * hz * t)).float()


def test_overlapping_pieces_of_one_signal_join_into_that_signal():
    """Pieces that voice overlapping stretches of the same signal, cross-faded, give the signal
    back: the fades' weights add up to one. Only the sentence's edges fade."""
    joiner = PieceJoiner(fade=16)
    out = []
    starts = [0, 100, 260, 300]
    ends = [140, 300, 340, 500]
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        tail = ends[i] - starts[i + 1] if i + 1 < len(starts) else 0
        out.append(joiner.push(_sine(b - a, a), tail, i == len(starts) - 1))
    audio = torch.cat(out)
    expected = _sine(500)
    assert audio.shape == expected.shape
    torch.testing.assert_close(audio[16:-16], expected[16:-16], atol=1e-6, rtol=0)
    assert abs(audio[0]) < abs(expected[0]) + 1e-9 and abs(audio[-1]) <= abs(expected[-1])
    assert torch.all(audio[:16].abs() <= expected[:16].abs() + 1e-7)


def test_a_piece_shorter_than_the_overlap_it_owes_is_refused():
    joiner = PieceJoiner(fade=0)
    joiner.push(_sine(100), 50, False)
    with pytest.raises(ValueError, match="cannot overlap"):
        joiner.push(_sine(10), 0, True)


@pytest.mark.parametrize("orig,new", [(22050, 16000), (22050, 44100), (16000, 22050), (22050, 8000)])
def test_the_streaming_resampler_equals_torchaudio_resample_of_the_whole(orig, new):
    x = torch.randn(9001)
    for block in (97, 1000, 20000):
        r = StreamingResampler(orig, new)
        y = torch.cat([r.push(x[i : i + block]) for i in range(0, len(x), block)] + [r.finish()])
        torch.testing.assert_close(y, AF.resample(x, orig, new), atol=2e-6, rtol=0)


def test_encodings_and_wav_files_read_back_with_soundfile():
    import soundfile

    x = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 2.0])
    ints = np.frombuffer(encode(x, "linear16"), dtype="<i2")
    assert ints.tolist() == [0, 16384, -16384, 32767, -32767, 32767]
    floats = np.frombuffer(encode(x, "float32"), dtype="<f4")
    assert floats.tolist() == [0.0, 0.5, -0.5, 1.0, -1.0, 1.0]
    for encoding, subtype in (("linear16", "PCM_16"), ("float32", "FLOAT")):
        data, rate = soundfile.read(io.BytesIO(wav_file(encode(x, encoding), 12345, encoding)), dtype="float32")
        assert (
            rate == 12345 and len(data) == 6 and soundfile.info(io.BytesIO(wav_file(b"", 8000, encoding))).frames == 0
        )
        assert soundfile.info(io.BytesIO(wav_file(encode(x, encoding), 12345, encoding))).subtype == subtype
    with pytest.raises(ValueError, match="unknown encoding"):
        encode(x, "mulaw")


# -- the runtime, with a sine-wave model ---------------------------------------------------------

RATE = 16000
PIECE, TAIL = 400, 80


@dataclass(eq=False)
class Tone:
    pieces: int
    done: int = 0


class SineModel(SpeechSynthesizer):
    """Says each letter as 25 ms of a 440 Hz sine, in pieces of 400 samples that overlap by 80."""

    sample_rate = RATE
    description = "sine"

    def __init__(self, ctx: LoadContext) -> None:
        self.gate = GATES.setdefault(ctx.model_name, threading.Event())
        self.steps: list[int] = []

    def load(self) -> None:
        pass

    def unload(self) -> None:
        pass

    def prepare(self, text: str) -> PreparedText:
        letters = [ord(c) for c in text if c.isalpha()]
        dropped = "".join(dict.fromkeys(c for c in text if not (c.isalpha() or c.isspace() or c in ".,!?")))
        return PreparedText(letters, text, 0, sum(1 for c in text if c in dropped), dropped)

    def start(self, prepared: PreparedText, options: SynthesisOptions) -> Tone:
        return Tone(max(1, len(prepared.tokens) // 2))

    def step(self, utterances: Sequence[Tone]) -> list[list[AudioPiece]]:
        self.gate.wait(30)
        self.steps.append(len(utterances))
        out = []
        for u in utterances:
            start = u.done * (PIECE - TAIL)
            last = u.done == u.pieces - 1
            out.append([AudioPiece(_sine(PIECE, start), 0 if last else TAIL, last)])
            u.done += 1
        return out

    def release(self, utterance: Tone) -> None:
        pass


GATES: dict[str, threading.Event] = {}


class SinePlugin:
    @hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        register(ModelSpec(name="sine", task=Task.SPEECH_SYNTHESIS, factory=SineModel))


def expected_audio(text: str, rate: int, pause_ms: int) -> torch.Tensor:
    """What the sine model says for ``text``, by the signal: each sentence a continuous sine,
    faded in and out, resampled on its own, with the pause after all but the last."""
    parts = []
    sentences = split_text(text, 200)
    for i, s in enumerate(sentences):
        pieces = max(1, sum(c.isalpha() for c in s.text) // 2)
        x = _sine(PIECE + (pieces - 1) * (PIECE - TAIL))
        fade = round(FADE_MS * RATE / 1000)
        w = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(fade) + 0.5) / fade)
        x[:fade] *= w
        x[-fade:] *= w.flip(0)
        parts.append(AF.resample(x, RATE, rate) if rate != RATE else x)
        if i < len(sentences) - 1:
            parts.append(torch.zeros(round(pause_ms * rate / 1000)))
    return torch.cat(parts)


@pytest.fixture(scope="module")
def server():
    model = {"spec": "sine", "devices": ["cpu"], "sentence_pause_ms": 30, "max_queue_size": 2, "max_batch_size": 2}
    GATES.setdefault("sine", threading.Event()).set()
    with running_server({"models": [model]}, extra_plugins=[("sine", SinePlugin())]) as s:
        yield s


@pytest.fixture
def stub(server):
    GATES["sine"].set()
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.SpeechSynthesisStub(channel)


@pytest.mark.parametrize("rate", [16000, 22050, 8000])
def test_the_stream_is_the_signal_joined_resampled_and_paused(stub, rate):
    text = "Hello world, this is a tone. Second sentence here! Third?"
    request = pb.SynthesizeRequest(model="sine", text=text, sample_rate_hz=rate, encoding=pb.SYNTHESIS_ENCODING_FLOAT32)
    messages = list(stub.Synthesize(request, timeout=30))
    audio = np.frombuffer(b"".join(m.audio.audio_content for m in messages[1:-1]), dtype="<f4")
    np.testing.assert_allclose(audio, expected_audio(text, rate, 30).numpy(), atol=2e-6, rtol=0)
    assert messages[-1].summary.sentences == 3


def _model(server):
    return server.server.registry.describe("sine").instances[0].model


def test_unloading_mid_stream_ends_the_call_unavailable_and_the_step_in_flight_finishes(server, stub):
    gate = GATES["sine"]
    gate.clear()
    call = stub.Synthesize(pb.SynthesizeRequest(model="sine", text="A long text with many letters in it."))
    assert next(call).WhichOneof("content") == "format"
    unloading = threading.Thread(target=lambda: server.call(server.server.registry.unload("sine")))
    unloading.start()
    time.sleep(0.2)  # let the unload start while a step is held (its end is what is checked)
    gate.set()
    with pytest.raises(grpc.RpcError) as e:
        list(call)
    unloading.join(30)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "unloaded" in e.value.details()
    server.call(server.server.registry.load(server.server.config.models[0]))


def test_a_deadline_that_passes_mid_stream_is_deadline_exceeded(server, stub):
    gate = GATES["sine"]
    gate.clear()
    call = stub.Synthesize(pb.SynthesizeRequest(model="sine", text="Letters and letters."), timeout=0.5)
    with pytest.raises(grpc.RpcError) as e:
        list(call)
    gate.set()
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_calls_beyond_the_queue_are_resource_exhausted_at_once(server, stub):
    """One call's step is held; two more wait (max_queue_size 2): the next is refused at once,
    and the others carry on when the step is let go."""
    gate = GATES["sine"]
    gate.clear()
    text = "Some letters."
    lane = server.server.registry.lookup("speech_synthesis")("sine").scheduler.lanes[0]
    calls = []
    try:
        for i in range(3):
            call = stub.Synthesize(pb.SynthesizeRequest(model="sine", text=text), timeout=30)
            assert next(call).WhichOneof("content") == "format"  # prepared: running or waiting now
            calls.append(call)
            if i == 0:  # its step is in flight, held by the gate
                deadline = time.monotonic() + 30
                while not lane.joining and time.monotonic() < deadline:
                    time.sleep(0.01)
        refused = stub.Synthesize(pb.SynthesizeRequest(model="sine", text=text), timeout=30)
        with pytest.raises(grpc.RpcError) as e:
            next(refused)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "2 calls waiting" in e.value.details()
    finally:
        gate.set()
    assert all(list(c)[-1].summary.sentences == 1 for c in calls)

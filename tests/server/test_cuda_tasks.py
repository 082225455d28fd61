"""Every task's CUDA path over real gRPC: speech recognition, speech synthesis (every vocoder
pairing), image generation (every family, float32 and half precision) and text generation
joining a running batch, each served on ``cuda:0`` and compared with the same model run in
process on the same device; two instances of one model on one GPU serving in parallel.
Skipped without a GPU; run on the device machine with `scripts/test.sh -m cuda`.

References run on the same device as the server (same kernels, same TF32 defaults), so that
where the CPU tests assert bit equality these do too; half precision is compared with the
float32 CPU reference within a tolerance wide enough for its rounding."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import torch

import imagegen_models as im
from modelplex.testing import running_server
from modelplex_client import AsyncClient
from modelplex_client.pb import image_generation_pb2 as ig
from modelplex_client.pb import image_generation_pb2_grpc as ig_grpc
from modelplex_client.pb import speech_recognition_pb2 as sr
from modelplex_client.pb import speech_recognition_pb2_grpc as sr_grpc
from modelplex_client.pb import speech_synthesis_pb2 as ss
from modelplex_client.pb import speech_synthesis_pb2_grpc as ss_grpc
from speech_audio import RATE, clip, from_linear16, linear16
from speech_models import hf_decode, w2v_model
from text_models import reference, text_model
from tts_models import load_in_process, offline, save_tacotron, save_waveglow, save_wavernn, tts_model

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

GPU = "cuda:0"


def on_gpu(entry: dict, **fields: object) -> dict:
    return {**entry, "devices": [GPU], **fields}


# -- speech recognition ------------------------------------------------------------------------


def _recognize_stream(channel, audio: bytes, model: str, chunk_bytes: int = 3200):
    def requests():
        cfg = sr.RecognitionConfig(encoding=sr.RecognitionConfig.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE)
        yield sr.StreamingRecognizeRequest(streaming_config=sr.StreamingRecognitionConfig(model=model, config=cfg))
        for i in range(0, len(audio), chunk_bytes):
            yield sr.StreamingRecognizeRequest(audio_content=audio[i : i + chunk_bytes])

    responses = sr_grpc.SpeechRecognitionStub(channel).StreamingRecognize(requests(), timeout=120)
    return [r for m in responses for r in m.results if r.is_final]


def test_speech_recognition_on_cuda_equals_the_in_process_decode_on_the_gpu():
    with running_server({"models": [on_gpu(w2v_model())]}) as server, grpc.insecure_channel(server.address) as ch:
        from modelplex_client import Client

        with Client(server.address, timeout=60) as client:
            [instance] = client.get_model("w2v").instances
            assert instance.device == GPU and instance.memory_bytes > 0
        clips = [linear16(clip(seed=s, utterances=2)) for s in range(4)]
        alone = [_recognize_stream(ch, audio, "w2v") for audio in clips]
        for audio, finals in zip(clips, alone, strict=True):
            samples = from_linear16(audio)
            assert [r.segment_index for r in finals] == [0, 1]
            for r in finals:
                start, end = (round(ms * RATE / 1000) for ms in (r.result_start_ms, r.result_end_ms))
                assert r.alternatives[0].transcript == hf_decode(samples[start:end], GPU)
        # Four streams at once share the GPU's passes and each gets what it got alone.
        together: list = [None] * len(clips)

        def run(i: int) -> None:
            together[i] = _recognize_stream(ch, clips[i], "w2v")

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clips))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        transcripts = [[r.alternatives[0].transcript for r in finals] for finals in alone]
        assert [[r.alternatives[0].transcript for r in finals] for finals in together] == transcripts


# -- speech synthesis --------------------------------------------------------------------------

TTS_TEXT = "Hello there, on the GPU. A second sentence follows."


@pytest.fixture(scope="module")
def tts_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tts-cuda")
    return {
        "gl": ("tacotron2-griffinlim", save_tacotron(root / "t.pt"), {}),
        "glow": (
            "tacotron2-waveglow",
            save_tacotron(root / "nvidia.pt", n_symbol=148, layout="nvidia"),
            {"vocoder_weights": str(save_waveglow(root / "waveglow.pt")), "max_decoder_steps": 20},
        ),
        "rnn": (
            "tacotron2-wavernn",
            save_tacotron(root / "t2.pt"),
            {"vocoder_weights": str(save_wavernn(root / "wavernn.pt")), "max_decoder_steps": 6},
        ),
    }


def _synthesize(address: str, model: str, text: str) -> bytes:
    with grpc.insecure_channel(address) as channel:
        request = ss.SynthesizeRequest(model=model, text=text, encoding=ss.SYNTHESIS_ENCODING_FLOAT32)
        messages = list(ss_grpc.SpeechSynthesisStub(channel).Synthesize(request, timeout=120))
    assert messages[0].WhichOneof("content") == "format" and messages[-1].WhichOneof("content") == "summary"
    return b"".join(m.audio.audio_content for m in messages[1:-1])


def test_every_tts_pairing_on_cuda_streams_what_it_synthesizes_in_process_on_the_gpu(tts_checkpoints):
    # batch_invariant is left unset: on CUDA it defaults to on, which is what makes a sentence's
    # audio bit-identical alone and batched (settings.py); the tests' SETTINGS set it, so unset it.
    models = [
        on_gpu(tts_model(name, spec, path, **extra, batch_invariant=None))
        for name, (spec, path, extra) in tts_checkpoints.items()
    ]
    with running_server({"models": models}) as server:
        for name, (spec, path, extra) in tts_checkpoints.items():
            model = load_in_process(spec, path, device=GPU, **extra, batch_invariant=None)
            expected = offline(model, TTS_TEXT, encoding="float32").audio
            audio = _synthesize(server.address, name, TTS_TEXT)
            samples = np.frombuffer(audio, dtype="<f4")
            assert np.isfinite(samples).all() and np.abs(samples).max() > 0, name
            assert audio == expected, name
            # Three calls at once share the decoder's steps; each gets its audio alone, to the bit.
            texts = [TTS_TEXT, "Another call speaks.", "And a third one."]
            with ThreadPoolExecutor(3) as pool:
                results = list(pool.map(lambda text, name=name: _synthesize(server.address, name, text), texts))
            assert results[0] == expected, name
            assert results[1] == offline(model, texts[1], encoding="float32").audio, name
            model.unload()


# -- image generation --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    return im.save_every_family(tmp_path_factory.mktemp("imagegen-cuda"))


FLOAT32 = ig.ImageOutput(format=ig.IMAGE_FORMAT_FLOAT32)
# float32 on the GPU against float32 on the CPU: cuDNN's convolutions use TF32 by default.
TOLERANCE = {"float32": 2e-2, "float16": 6e-2, "bfloat16": 1.5e-1}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_every_image_generator_on_cuda_matches_the_cpu_module_and_a_seed_is_stable_in_a_batch(generators, dtype):
    families = ["dcgan", "stylegan2", "biggan", "vae"]
    entries = []
    for family in families:
        path, _, settings = generators[family]
        entries.append(
            {
                "name": family,
                "spec": im.SPECS[family],
                "weights": str(path),
                "devices": [GPU],
                "settings": {**settings, "dtype": dtype},
                "max_batch_size": 4,
                "pad_batches": True,
            }
        )
    with running_server({"models": entries}) as server, grpc.insecure_channel(server.address) as channel:
        stub = ig_grpc.ImageGenerationStub(channel)
        for family in families:
            _, net, _ = generators[family]
            request = ig.ImageGenerationGenerateRequest(model=family, num_images=3, seed=11, output=FLOAT32)
            batched = list(stub.Generate(request, timeout=120))
            assert [r.seed for r in batched] == [11, 12, 13]
            for r in batched:
                got = im.tensor_of(r)
                avg = generators["latent_avg"] if family == "stylegan2" else None
                options = {"truncation": 0.4} if family == "biggan" else {}
                want, class_index = im.reference(family, net, r.seed, latent_avg=avg, **options)
                assert got.shape == want.shape and torch.isfinite(got).all(), family
                assert 0 <= float(got.min()) and float(got.max()) <= 1, family
                torch.testing.assert_close(got, want, atol=TOLERANCE[dtype], rtol=0, msg=family)
                if class_index is not None:
                    assert r.class_index == class_index
            # pad_batches: every pass has one shape, so a seed gives the same bits alone.
            one = ig.ImageGenerationGenerateRequest(model=family, num_images=1, seed=12, output=FLOAT32)
            alone = list(stub.Generate(one, timeout=120))
            assert im.tensor_of(alone[0]).equal(im.tensor_of(batched[1])), family


# -- text generation ---------------------------------------------------------------------------

PROMPTS = [("hello world", 24), ("a", 10), ("the quick brown fox jumps", 12), ("hello", 16)]


async def _collect(stream):
    return [c async for c in stream]


def test_text_streams_joining_a_running_batch_on_cuda_equal_each_alone():
    models = [on_gpu(text_model("gpt2", "gpt2", "gpt2")), on_gpu(text_model("t5", "t5-small", "t5"))]
    with running_server({"models": models}) as server:

        async def main(model):
            async with AsyncClient(server.address, timeout=60) as client:
                first_prompt, first_n = PROMPTS[0]
                first = client.generate(first_prompt, model=model, max_new_tokens=first_n)
                head = [await first.__anext__() for _ in range(3)]  # the others join a running batch
                others = [
                    asyncio.create_task(_collect(client.generate(p, model=model, max_new_tokens=n)))
                    for p, n in PROMPTS[1:]
                ]
                rest = await _collect(first)
                return [head + rest, *[await t for t in others]]

        for model, folder in (("gpt2", "gpt2"), ("t5", "t5")):
            results = asyncio.run(main(model))
            for (prompt, n), chunks in zip(PROMPTS, results, strict=True):
                assert [t for c in chunks for t in c.token_ids] == reference(folder, prompt, n), (model, prompt)


def test_two_instances_on_one_gpu_serve_in_parallel():
    model = on_gpu(text_model("gpt2", "gpt2", "gpt2"), instances_per_device=2)
    with running_server({"models": [model]}) as server:

        async def main():
            async with AsyncClient(server.address, timeout=60) as client:
                info = await client.get_model("gpt2")
                assert [i.device for i in info.instances] == [GPU, GPU]
                streams = [_collect(client.generate(p, model="gpt2", max_new_tokens=n)) for p, n in PROMPTS * 4]
                results = await asyncio.gather(*streams)
                return results, await client.get_model("gpt2")

        results, info = asyncio.run(main())
        for (prompt, n), chunks in zip(PROMPTS * 4, results, strict=True):
            assert [t for c in chunks for t in c.token_ids] == reference("gpt2", prompt, n), prompt
        assert all(i.completed > 0 for i in info.instances), [i.completed for i in info.instances]

"""The tts plugin: registration, the conformance kit, every pairing served from checkpoints in
their real layouts, and pretrained files found in (or missing from) the torch hub cache."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from modelplex.conformance import check_model, check_registration
from modelplex.testing import running_server
from modelplex_client.pb import speech_synthesis_pb2 as pb
from modelplex_client.pb import speech_synthesis_pb2_grpc as pb_grpc
from tts_models import (
    SETTINGS,
    load_in_process,
    offline,
    save_phonemizer,
    save_tacotron,
    save_waveglow,
    save_wavernn,
    tts_model,
)

TEXT = "Two sentences here. And the second one."


def test_registration_imports_no_torch_and_registers_the_pairings():
    result = check_registration("tts")
    assert result["specs"] == ["tacotron2-griffinlim", "tacotron2-wavernn", "tacotron2-waveglow"]


def test_the_griffin_lim_pairing_conforms(tmp_path):
    check_model(tts_model("tts", "tacotron2-griffinlim", save_tacotron(tmp_path / "t.pt")))


def _stream(address, model, text=TEXT, speaking_rate=None):
    with grpc.insecure_channel(address) as channel:
        request = pb.SynthesizeRequest(model=model, text=text, encoding=pb.SYNTHESIS_ENCODING_FLOAT32)
        if speaking_rate is not None:
            request.speaking_rate = speaking_rate
        return list(pb_grpc.SpeechSynthesisStub(channel).Synthesize(request, timeout=120))


def test_every_pairing_and_layout_streams_what_it_synthesizes_in_process(tmp_path):
    """At rate 1 and at a speaking rate: every pairing stretches its mel before its vocoder."""
    from modelplex.tasks.speech_synthesis import SynthesisOptions

    taco = save_tacotron(tmp_path / "tacotron2.pt")
    nvidia = save_tacotron(tmp_path / "nvidia_tacotron2.pt", n_symbol=148, layout="nvidia")
    waveglow = save_waveglow(tmp_path / "waveglow.pt")
    wavernn = save_wavernn(tmp_path / "wavernn.pt")
    cases = {  # name: spec, checkpoint, settings, speaking rate, hop
        "glow": ("tacotron2-waveglow", nvidia, {"vocoder_weights": str(waveglow), "max_decoder_steps": 20}, 1.5, 256),
        "rnn": ("tacotron2-wavernn", taco, {"vocoder_weights": str(wavernn), "max_decoder_steps": 6}, 0.5, 275),
        "gl-nvidia": ("tacotron2-griffinlim", nvidia, {}, 2.0, 256),
    }
    models = [tts_model(name, spec, path, **extra) for name, (spec, path, extra, _, _) in cases.items()]
    with running_server({"models": models}) as server:
        for name, (spec, path, extra, rate, hop) in cases.items():
            model = load_in_process(spec, path, **extra)
            lengths = []
            for options in (SynthesisOptions(), SynthesisOptions(speaking_rate=rate)):
                messages = _stream(server.address, name, speaking_rate=options.speaking_rate)
                assert messages[-1].summary.sentences == 2
                audio = b"".join(m.audio.audio_content for m in messages[1:-1])
                expected = offline(model, TEXT, encoding="float32", options=options)
                assert audio == expected.audio, (name, options)
                samples = np.frombuffer(audio, dtype="<f4")
                assert np.isfinite(samples).all() and np.abs(samples).max() > 0, name
                lengths.append(len(samples))
            # Each sentence decodes extra["max_decoder_steps"] (or 24) frames, each made hop samples,
            # stretched to floor(T / rate + 1/2); the pause between the two stays 150 ms.
            frames = extra.get("max_decoder_steps", SETTINGS["max_decoder_steps"])
            pause = round(150 * 22050 / 1000)
            assert lengths == [2 * frames * hop + pause, 2 * int(frames / rate + 0.5) * hop + pause], name


def test_packed_lstm_cells_and_linear_layers_change_the_audio_by_rounding_only(tmp_path, monkeypatch):
    """With prepack's size floor at 0 (the tiny models' layers are under it; a full-size
    Tacotron's LSTM cells are far over it), the decoder's LSTM cells and linear layers are
    packed for oneDNN: WaveGlow's audio equals the plain model's to rounding (Griffin-Lim's
    iterations would amplify the rounding), and the server streams what the packed model
    synthesizes in process."""
    from modelplex import prepack

    monkeypatch.setattr(prepack, "MIN_WEIGHTS", 0)
    nvidia = save_tacotron(tmp_path / "nvidia.pt", n_symbol=148, layout="nvidia")
    extra = {"vocoder_weights": str(save_waveglow(tmp_path / "waveglow.pt")), "max_decoder_steps": 20}
    packed = load_in_process("tacotron2-waveglow", nvidia, **extra)
    plain = load_in_process("tacotron2-waveglow", nvidia, cpu_prepack=False, **extra)
    kinds = [type(m).__name__ for m in packed.decoder.model.modules()]
    assert kinds.count("_PackedLSTMCell") == 2 and "LSTMCell" not in kinds
    assert "_PackedLSTMCell" not in {type(m).__name__ for m in plain.decoder.model.modules()}
    audio = offline(packed, TEXT, encoding="float32").audio
    want = np.frombuffer(offline(plain, TEXT, encoding="float32").audio, dtype="<f4")
    np.testing.assert_allclose(np.frombuffer(audio, dtype="<f4"), want, rtol=0, atol=1e-5)
    with running_server({"models": [tts_model("glow", "tacotron2-waveglow", nvidia, **extra)]}) as server:
        messages = _stream(server.address, "glow")
    assert b"".join(m.audio.audio_content for m in messages[1:-1]) == audio


def test_a_checkpoint_pairing_without_the_vocoders_weights_fails_to_load_saying_so(tmp_path):
    from modelplex.errors import ModelLoadError

    taco = save_tacotron(tmp_path / "t.pt")
    with pytest.raises(ModelLoadError, match="settings.vocoder_weights"):
        load_in_process("tacotron2-waveglow", taco)


def test_a_checkpoint_of_another_size_loads_by_its_shapes(tmp_path):
    """The architecture is read from the tensors: a checkpoint need not be the published size."""
    import torch
    from torchaudio.models import Tacotron2

    torch.manual_seed(3)
    odd = Tacotron2(
        n_symbol=38,
        symbol_embedding_dim=24,
        encoder_embedding_dim=24,
        encoder_n_convolution=2,
        encoder_kernel_size=3,
        decoder_rnn_dim=40,
        attention_rnn_dim=36,
        attention_hidden_dim=12,
        attention_location_n_filter=3,
        attention_location_kernel_size=5,
        prenet_dim=20,
        postnet_n_convolution=3,
        postnet_embedding_dim=28,
        postnet_kernel_size=3,
    )
    torch.save(odd.state_dict(), tmp_path / "odd.pt")
    model = load_in_process("tacotron2-griffinlim", tmp_path / "odd.pt")
    loaded = model.decoder.model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in odd.state_dict().items())
    assert model.decoder.postnet_context == 3


def test_a_tacotron_checkpoint_with_a_foreign_key_fails_naming_it(tmp_path):
    import torch

    from modelplex.errors import ModelLoadError

    path = save_tacotron(tmp_path / "t.pt")
    sd = torch.load(path, weights_only=True)
    sd["decoder.extra.weight"] = torch.zeros(1)
    del sd["decoder.gate_layer.bias"]
    torch.save(sd, path)
    with pytest.raises(
        ModelLoadError, match=r"missing keys \[decoder.gate_layer.bias\].*unexpected keys \[decoder.extra.weight\]"
    ):
        load_in_process("tacotron2-griffinlim", path)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    import torch

    # Through monkeypatch, so that torch.hub's directory is unset again afterwards: restoring it
    # with set_dir(before) would pin it, and later tests' TORCH_HOME would be ignored.
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_pretrained_bundle_files_missing_from_the_hub_cache_fail_fast_with_path_and_url(hub_dir, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(hub_dir.parent / "home"))
    entry = {"spec": "tacotron2-griffinlim", "weights": "pretrained", "devices": ["cpu"]}
    from modelplex.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError) as e:
        with running_server({"models": [entry]}):
            pass
    message = str(e.value)
    assert str(hub_dir / "checkpoints" / "tacotron2_english_characters_1500_epochs_ljspeech.pth") in message
    assert (
        "https://download.pytorch.org/torchaudio/models/tacotron2_english_characters_1500_epochs_ljspeech.pth"
        in message
    )


def test_pretrained_files_in_the_hub_cache_load_for_every_pairing(hub_dir):
    """Files under the names the torchaudio bundles and DeepLearningExamples' entry points use,
    in the hub cache, are what `weights = "pretrained"` loads (tiny stand-ins here: the real
    ones are 100 MB to 1 GB and the machine reaches no hub)."""
    import torch

    cache = hub_dir / "checkpoints"
    cache.mkdir(parents=True)
    files = {
        "tacotron2-griffinlim": save_tacotron(cache / "tacotron2_english_characters_1500_epochs_ljspeech.pth", seed=5),
        "tacotron2-wavernn": save_tacotron(cache / "tacotron2_english_characters_1500_epochs_wavernn_ljspeech.pth"),
        "tacotron2-waveglow": save_tacotron(cache / "nvidia_tacotron2pyt_fp32_20190427", n_symbol=148, layout="nvidia"),
    }
    save_wavernn(cache / "wavernn_10k_epochs_8bits_ljspeech.pth")
    save_waveglow(cache / "nvidia_waveglowpyt_fp32_20190427")
    settings = {**SETTINGS, "max_decoder_steps": 6}
    models = [{"spec": s, "weights": "pretrained", "devices": ["cpu"], "settings": settings} for s in files]
    with running_server({"models": models}) as server:
        for spec, wanted in files.items():
            loaded = server.server.registry.describe(spec).instances[0].model
            sd = loaded.decoder.model.state_dict()
            want = torch.load(wanted, weights_only=True)
            want = want.get("state_dict", want)
            embedding = want.get("embedding.weight", want.get("module.embedding.weight"))
            assert len(sd) == len(want) and torch.equal(sd["embedding.weight"], embedding)
            assert loaded.vocoder.name in spec.replace("griffinlim", "griffin-lim")
            assert _stream(server.address, spec)[-1].summary.sentences == 2


def test_the_phoneme_processor_needs_deepphonemizer(tmp_path):
    from modelplex.errors import ModelLoadError

    try:
        import dp  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("DeepPhonemizer is installed here")
    with pytest.raises(ModelLoadError, match="pip install deep-phonemizer"):
        load_in_process("tacotron2-griffinlim", save_tacotron(tmp_path / "t.pt", n_symbol=96))


def test_a_phone_bundle_serves_with_deepphonemizer_from_the_hub_cache(hub_dir):
    """``PHONE_LJSPEECH`` with ``weights = "pretrained"``: the Tacotron 2 file and DeepPhonemizer's
    ``en_us_cmudict_forward.pt`` (a tiny random one, in its real layout) from the hub cache,
    loaded by torchaudio's own phoneme processor; served equals in process."""
    pytest.importorskip("dp", reason="the phoneme processor needs deep-phonemizer (the plugin's phonemes extra)")
    from torchaudio.pipelines import TACOTRON2_GRIFFINLIM_PHONE_LJSPEECH

    cache = hub_dir / "checkpoints"
    save_phonemizer(cache / "en_us_cmudict_forward.pt")
    taco = save_tacotron(cache / TACOTRON2_GRIFFINLIM_PHONE_LJSPEECH._tacotron2_path, n_symbol=96)
    entry = {
        "name": "phones",
        "spec": "tacotron2-griffinlim",
        "variant": "PHONE_LJSPEECH",
        "weights": "pretrained",
        "devices": ["cpu"],
        "settings": SETTINGS,
    }
    with running_server({"models": [entry]}) as server:
        served = server.server.registry.describe("phones").instances[0].model
        assert served.processor.name == "phonemes" and served.processor.n_symbols == 96
        messages = _stream(server.address, "phones")
    assert messages[-1].summary.sentences == 2
    audio = b"".join(m.audio.audio_content for m in messages[1:-1])
    reference = load_in_process("tacotron2-griffinlim", taco)  # 96 symbols: "auto" picks phonemes
    assert reference.processor.name == "phonemes"
    assert audio == offline(reference, TEXT, encoding="float32").audio
    # The tokens are torchaudio's phoneme processor's for the normalised text: phonemes (ids 12 and
    # up), spaces and punctuation.
    prepared = reference.prepare("Two sentences, 2 here!")
    ids, _ = TACOTRON2_GRIFFINLIM_PHONE_LJSPEECH.get_text_processor()(prepared.text)
    assert prepared.text == "Two sentences, two here!" and list(prepared.tokens) == ids[0].tolist()
    assert any(t >= 12 for t in prepared.tokens) and {2, 6, 11} <= set(prepared.tokens)


def test_the_phoneme_processor_fails_fast_without_deepphonemizers_checkpoint(hub_dir, tmp_path):
    pytest.importorskip("dp", reason="the phoneme processor needs deep-phonemizer (the plugin's phonemes extra)")
    from modelplex.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError) as e:
        load_in_process("tacotron2-griffinlim", save_tacotron(tmp_path / "t.pt", n_symbol=96))
    assert str(hub_dir / "checkpoints" / "en_us_cmudict_forward.pt") in str(e.value)
    assert "DeepPhonemizer/en_us_cmudict_forward.pt" in str(e.value)


def test_random_weights_serve_every_pairing_with_the_frames_capped_per_character():
    """What the demo profile does: random weights (reported as such), and a cap of frames per
    input symbol so that random Tacotron weights still speak for as long as the text."""
    from modelplex_client import Client
    from modelplex_client.pb import models_pb2

    specs = {"tacotron2-griffinlim": 256, "tacotron2-waveglow": 256, "tacotron2-wavernn": 275}
    settings = {"random_size": "tiny", "gate_threshold": 1.0, "max_decoder_steps": 40, "max_frames_per_char": 2}
    models = [{"spec": s, "weights": "random", "devices": ["cpu"], "settings": settings} for s in specs]
    with running_server({"models": models}) as server, Client(server.address, timeout=60) as client:
        for spec, hop in specs.items():
            assert client.get_model(spec).weights.source == models_pb2.WEIGHTS_SOURCE_RANDOM
            messages = _stream(server.address, spec, "Hi. A longer second sentence.")
            first = [m.audio for m in messages[1:-1] if m.audio.sentence_index == 0]
            pause = round(150 * 22050 / 1000)
            # "Hi." is 3 symbols: 6 frames, then the pause before the next sentence.
            assert sum(len(c.audio_content) for c in first) // 4 == 6 * hop + pause, spec
            assert messages[-1].summary.sentences == 2

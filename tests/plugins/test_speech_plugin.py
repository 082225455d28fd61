"""The speech plugin: registration is cheap, each model family loads through its real loading code
(Hugging Face folders, torchaudio's DeepSpeech in the documented format, deepspeech.pytorch
packages and Lightning checkpoints read without running pickled code), serves finals equal to an
in-process decode, and missing pretrained weights fail fast with a clear message."""

from __future__ import annotations

import dataclasses
import enum
import json
import pickle
import sys
import types

import grpc
import pytest
import torch

from modelplex import LoadContext, ModelLoadError, WeightsChoice, WeightsNotFoundError, WeightsSource
from modelplex.conformance import check_model, check_registration
from modelplex.testing import running_server
from modelplex_client.pb import speech_recognition_pb2 as pb
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc
from modelplex_speech.plugin import build_specs
from speech_audio import RATE, clip, from_linear16, linear16
from speech_models import w2v_model

SPECS = {s.name: s for s in build_specs()}


def context(spec: str, weights: WeightsChoice, **settings) -> LoadContext:
    s = SPECS[spec]
    return LoadContext(spec, s, s.variant(None), weights, "cpu", s.settings(**settings))


def greedy(labels, blank, ids) -> str:
    """Plain CTC greedy decoding, written out here as the reference."""
    out, previous = [], None
    for i in ids:
        if i != previous and i != blank:
            out.append(labels[i])
        previous = i
    return " ".join("".join(out).split())


def test_registration_imports_no_torch():
    result = check_registration("speech")
    assert {"hf-wav2vec2", "deepspeech", "deepspeech2", "tiny-wav2vec2", "wav2vec2-base-960h"} <= set(result["specs"])


def test_the_tiny_hf_model_conforms():
    check_model(w2v_model())


def test_a_hub_id_missing_from_the_cache_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ctx = context("hf-wav2vec2", WeightsChoice(WeightsSource.PRETRAINED, id="acme/no-such-wav2vec2"))
    model = SPECS["hf-wav2vec2"].factory(ctx)
    with pytest.raises(WeightsNotFoundError, match="acme/no-such-wav2vec2.*not in the local Hugging Face cache"):
        model.load()


def test_a_torchaudio_bundle_missing_from_the_hub_cache_fails_fast_with_path_and_url(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = SPECS["wav2vec2-base-960h"].factory(context("wav2vec2-base-960h", WeightsChoice(WeightsSource.PRETRAINED)))
    with pytest.raises(WeightsNotFoundError) as e:
        model.load()
    message = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / "wav2vec2_fairseq_base_ls960_asr_ls960.pth") in message
    assert "https://download.pytorch.org/torchaudio/models/wav2vec2_fairseq_base_ls960_asr_ls960.pth" in message


def test_a_torchaudio_bundle_with_random_weights_is_its_architecture(tmp_path):
    import torchaudio

    # Unpacked: its state dict is the architecture's (packed layers keep only oneDNN's copy).
    random = WeightsChoice(WeightsSource.RANDOM)
    model = SPECS["wav2vec2-base-960h"].factory(context("wav2vec2-base-960h", random, cpu_prepack=False))
    model.load()
    bundle = torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H
    assert model.labels == bundle.get_labels() and model.sample_rate == 16000
    with torch.device("meta"):
        reference = torchaudio.models.wav2vec2_model(**bundle._params)
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in model.module.state_dict().items()} == shapes
    x = torch.from_numpy(clip(seed=1, utterances=1)[:RATE])
    (expected,) = model.emissions([x])
    assert expected.shape == (49, len(bundle.get_labels()))
    # A checkpoint of that architecture (a state dict, as the bundle's own files are) loads too.
    path = tmp_path / "w2v.pth"
    torch.save(model.module.state_dict(), path)
    loaded = SPECS["wav2vec2-base-960h"].factory(
        context("wav2vec2-base-960h", WeightsChoice(WeightsSource.CHECKPOINT, path), cpu_prepack=False)
    )
    loaded.load()
    assert torch.equal(loaded.emissions([x])[0], expected)
    # By default its linear layers (768 wide) are packed for oneDNN: the same scores, to rounding.
    packed = SPECS["wav2vec2-base-960h"].factory(
        context("wav2vec2-base-960h", WeightsChoice(WeightsSource.CHECKPOINT, path))
    )
    packed.load()
    # 12 layers x (q, k, v, out, 2 feed-forward) and the feature projection; the 768 x 32 head is small.
    assert sum(type(m).__name__ == "_PackedLinear" for m in packed.module.modules()) == 73
    assert packed.memory_bytes() >= model.memory_bytes()
    torch.testing.assert_close(packed.emissions([x])[0], expected, rtol=0, atol=1e-4)


# -- torchaudio's DeepSpeech ---------------------------------------------------------------


def _deepspeech(tmp_path, suffix):
    import torchaudio

    from modelplex_speech.deepspeech import DeepSpeechConfig, Features, save_deepspeech

    cfg = DeepSpeechConfig(features=Features(type="mfcc" if suffix == ".pt" else "log_mel", n_mels=24, n_mfcc=13))
    torch.manual_seed(5)
    module = torchaudio.models.DeepSpeech(cfg.n_feature, n_hidden=32, n_class=len(cfg.labels), dropout=0.0).eval()
    path = tmp_path / f"ds{suffix}"
    save_deepspeech(module, cfg, path)
    return cfg, module, path


def _deepspeech_emissions(cfg, module, samples):
    import torchaudio

    f = cfg.features
    mel = {"n_fft": f.n_fft, "win_length": f.win_length, "hop_length": f.hop_length, "n_mels": f.n_mels}
    if f.type == "mfcc":
        x = torchaudio.transforms.MFCC(sample_rate=RATE, n_mfcc=f.n_mfcc, melkwargs=mel)(samples)
    else:
        x = (torchaudio.transforms.MelSpectrogram(sample_rate=RATE, **mel)(samples) + 1e-6).log()
    with torch.inference_mode():
        return module(x.T[None, None])[0]


def _deepspeech_reference(cfg, module, samples) -> str:
    return greedy(cfg.labels, cfg.blank, _deepspeech_emissions(cfg, module, samples).argmax(-1).tolist())


def _stream_finals(address, model, audio):
    def requests():
        cfg = pb.RecognitionConfig(encoding=pb.RecognitionConfig.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE)
        yield pb.StreamingRecognizeRequest(
            streaming_config=pb.StreamingRecognitionConfig(model=model, config=cfg, interim_results=True)
        )
        for i in range(0, len(audio), 3200):
            yield pb.StreamingRecognizeRequest(audio_content=audio[i : i + 3200])

    with grpc.insecure_channel(address) as channel:
        responses = list(pb_grpc.SpeechRecognitionStub(channel).StreamingRecognize(requests(), timeout=120))
    return [r for m in responses for r in m.results if r.is_final], [r for m in responses for r in m.results]


def _segment(samples, r):
    return samples[round(r.result_start_ms * RATE / 1000) : round(r.result_end_ms * RATE / 1000)]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_deepspeech_checkpoints_serve_the_in_process_decode(tmp_path, suffix):
    cfg, module, path = _deepspeech(tmp_path, suffix)
    audio = linear16(clip(seed=3, utterances=2))
    samples = torch.from_numpy(from_linear16(audio))
    entry = {"spec": "deepspeech", "name": "ds", "weights": str(path), "devices": ["cpu"]}
    with running_server({"models": [entry]}) as server:
        finals, everything = _stream_finals(server.address, "ds", audio)
    assert len(finals) == 2 and len(everything) > 2  # interim results too
    for r in finals:
        assert r.alternatives[0].transcript == _deepspeech_reference(cfg, module, _segment(samples, r))


def test_deepspeech_finals_with_a_beam_search_over_a_lexicon(tmp_path):
    """DeepSpeech's labels ("<blank>", a space between words, lower case) with decoder = "beam":
    each final is torchaudio's ctc_decoder over the in-process emissions of its segment, given
    the labels with the space named "|" and the lexicon spelled out."""
    pytest.importorskip("flashlight.lib.text.decoder", reason="decoder = 'beam' needs flashlight-text")
    from torchaudio.models.decoder import ctc_decoder

    cfg, module, path = _deepspeech(tmp_path, ".safetensors")
    words = ("A", "TO", "IT", "EAT", "TEA", "ANT", "NET")
    lexicon = tmp_path / "lexicon.txt"  # upper-case words alone: spelled with the lower-case labels
    lexicon.write_text("".join(f"{w}\n" for w in words))
    spelled = tmp_path / "spelled.txt"
    spelled.write_text("".join(f"{w} {' '.join(w.lower())}\n" for w in words))
    audio = linear16(clip(seed=3, utterances=2))
    samples = torch.from_numpy(from_linear16(audio))
    entry = {"spec": "deepspeech", "name": "ds", "weights": str(path), "devices": ["cpu"]}
    entry |= {"decoder": "beam", "lexicon": str(lexicon), "word_score": 2.0, "beam_size": 20}
    with running_server({"models": [entry]}) as server:
        finals, _ = _stream_finals(server.address, "ds", audio)
    tokens = ["|" if label == " " else label for label in cfg.labels]
    beam = ctc_decoder(str(spelled), tokens, blank_token="<blank>", sil_token="|", word_score=2.0, beam_size=20)
    assert len(finals) == 2
    for r in finals:
        scores = torch.log_softmax(_deepspeech_emissions(cfg, module, _segment(samples, r)), -1)
        assert r.alternatives[0].transcript == " ".join(beam(scores.contiguous()[None])[0][0].words)
    assert {w for r in finals for w in r.alternatives[0].transcript.split()} <= set(words)
    assert any(r.alternatives[0].transcript for r in finals)


def test_a_deepspeech_file_of_another_format_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, path)
    model = SPECS["deepspeech"].factory(context("deepspeech", WeightsChoice(WeightsSource.CHECKPOINT, path)))
    with pytest.raises(ModelLoadError, match="modelplex.deepspeech/1"):
        model.load()


# -- DeepSpeech2 (deepspeech.pytorch) ------------------------------------------------------


@pytest.fixture
def deepspeech_pytorch():
    """Stand-ins for deepspeech.pytorch's config classes, so that torch.save pickles references
    to them by their real names; removed before loading (the server must not need them)."""
    names = [
        "deepspeech_pytorch",
        "deepspeech_pytorch.configs",
        "deepspeech_pytorch.configs.train_config",
        "deepspeech_pytorch.enums",
    ]
    mods = {n: types.ModuleType(n) for n in names}
    enums, cfgs = mods["deepspeech_pytorch.enums"], mods["deepspeech_pytorch.configs.train_config"]

    class SpectrogramWindow(enum.Enum):
        hamming = "hamming"
        hann = "hann"

    class RNNType(enum.Enum):
        lstm = torch.nn.LSTM
        gru = torch.nn.GRU

    @dataclasses.dataclass
    class SpectConfig:
        sample_rate: int = 16000
        window_size: float = 0.02
        window_stride: float = 0.01
        window: SpectrogramWindow = SpectrogramWindow.hamming

    @dataclasses.dataclass
    class BiDirectionalConfig:
        rnn_type: RNNType = RNNType.lstm
        hidden_size: int = 1024
        hidden_layers: int = 5

    for cls, mod in ((SpectrogramWindow, enums), (RNNType, enums), (SpectConfig, cfgs), (BiDirectionalConfig, cfgs)):
        cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
        setattr(mod, cls.__name__, cls)
    sys.modules.update(mods)
    try:
        yield types.SimpleNamespace(SpectConfig=SpectConfig, BiDirectionalConfig=BiDirectionalConfig, RNNType=RNNType)
    finally:
        for n in names:
            sys.modules.pop(n, None)


def _ds2(rnn_type="lstm", bidirectional=True):
    from modelplex_speech.deepspeech2 import DS2Config, build_ds2

    cfg = DS2Config(
        rnn_type=rnn_type, hidden_size=24, hidden_layers=2, bidirectional=bidirectional, lookahead_context=3
    )
    torch.manual_seed(7)
    module = build_ds2(cfg).eval()
    with torch.no_grad():  # batch-norm statistics as after training, not the identity
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return cfg, module


def _ds2_reference(cfg, module, samples) -> str:
    window = torch.hamming_window(cfg.n_fft, periodic=True)
    stft = torch.stft(
        samples, cfg.n_fft, cfg.hop, cfg.n_fft, window, center=True, pad_mode="reflect", return_complex=True
    )
    spect = torch.log1p(stft.abs())
    spect = (spect - spect.mean()) / spect.std()
    with torch.inference_mode():
        out = module(spect[None, None])
    return greedy(cfg.labels, 0, out[0].argmax(-1).tolist())


def test_deepspeech2_pth_package_and_lightning_ckpt(tmp_path, deepspeech_pytorch):
    import numpy as np

    cfg, module = _ds2()
    pth = tmp_path / "an4_pretrained_v2.pth"
    torch.save(
        {
            "version": "0.0.1",
            "hidden_size": 24,
            "hidden_layers": 2,
            "rnn_type": "lstm",
            "audio_conf": {"sample_rate": 16000, "window_size": 0.02, "window_stride": 0.01, "window": "hamming"},
            "labels": "".join(cfg.labels),
            "state_dict": module.state_dict(),
            "bidirectional": True,
            "avg_loss": np.float64(1.5),  # numpy scalars are not plain data: weights_only refuses them
        },
        pth,
    )
    ckpt = tmp_path / "librispeech_pretrained_v3.ckpt"
    ns = deepspeech_pytorch
    torch.save(
        {
            "epoch": 3,
            "pytorch-lightning_version": "1.1.0",
            "state_dict": module.state_dict(),
            "hyper_parameters": {
                "labels": list(cfg.labels),
                "model_cfg": ns.BiDirectionalConfig(rnn_type=ns.RNNType.lstm, hidden_size=24, hidden_layers=2),
                "spect_cfg": ns.SpectConfig(),
            },
        },
        ckpt,
    )
    for n in [m for m in sys.modules if m.startswith("deepspeech_pytorch")]:
        del sys.modules[n]
    with pytest.raises(pickle.UnpicklingError):  # a plain weights_only load refuses them
        torch.load(ckpt, weights_only=True)
    audio = linear16(clip(seed=4, utterances=1))
    samples = torch.from_numpy(from_linear16(audio))
    models = [
        {"spec": "deepspeech2", "name": "pth", "weights": str(pth), "devices": ["cpu"]},
        {"spec": "deepspeech2", "name": "ckpt", "weights": str(ckpt), "devices": ["cpu"]},
    ]
    with running_server({"models": models}) as server:
        for name in ("pth", "ckpt"):
            finals, _ = _stream_finals(server.address, name, audio)
            assert len(finals) == 1
            assert finals[0].alternatives[0].transcript == _ds2_reference(cfg, module, _segment(samples, finals[0]))


@pytest.mark.parametrize("rnn_type,bidirectional", [("gru", False), ("lstm", False)])
def test_deepspeech2_architecture_is_read_from_the_state_dict(tmp_path, rnn_type, bidirectional):
    from modelplex_speech.deepspeech2 import load_ds2_checkpoint

    cfg, module = _ds2(rnn_type, bidirectional)
    path = tmp_path / "m.pth"
    torch.save(
        {"labels": list(cfg.labels), "audio_conf": {"sample_rate": 16000}, "state_dict": module.state_dict()}, path
    )
    got, loaded = load_ds2_checkpoint(path)
    assert (got.rnn_type, got.bidirectional, got.hidden_size, got.hidden_layers) == (rnn_type, bidirectional, 24, 2)
    x = torch.from_numpy(clip(seed=2, utterances=1)[:RATE])
    assert _ds2_reference(got, loaded.eval(), x) == _ds2_reference(cfg, module, x)


class _Exploit:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['MODELPLEX_PWNED'], 'w').write('pwned')",))


def test_a_checkpoint_that_runs_code_when_unpickled_runs_none(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("MODELPLEX_PWNED", str(marker))
    path = tmp_path / "evil.pth"
    torch.save({"labels": ["_", "A"], "state_dict": {"x": torch.zeros(1)}, "hook": _Exploit()}, path)
    model = SPECS["deepspeech2"].factory(context("deepspeech2", WeightsChoice(WeightsSource.CHECKPOINT, path)))
    with pytest.raises(ModelLoadError, match="DeepSpeech2"):
        model.load()
    assert not marker.exists()


def test_deepspeech2_with_random_weights_streams(tmp_path):
    entry = {
        "spec": "deepspeech2",
        "name": "ds2",
        "weights": "random",
        "devices": ["cpu"],
        "settings": {"hidden_size": 32, "hidden_layers": 2},
    }
    with running_server({"models": [entry]}) as server:
        finals, _ = _stream_finals(server.address, "ds2", linear16(clip(seed=5, utterances=1)))
    assert len(finals) == 1
    assert json.dumps(finals[0].alternatives[0].transcript)

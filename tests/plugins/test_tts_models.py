"""The tts plugin's parts against the libraries they stand on: the step-by-step decoder against
``Tacotron2.infer``, the vocoders against torchaudio's, normalisation and the symbol tables,
and WaveGlow checkpoints in DeepLearningExamples' layout (and the ones it refuses)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modelplex.errors import ModelLoadError
from modelplex.tasks.speech_synthesis import SynthesisOptions
from tts_models import TINY_WAVEGLOW, TINY_WAVERNN, load_in_process, save_tacotron, save_waveglow


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tests run the models on pytest's main thread, whose 2-thread OpenMP team crawls on
    a loaded 2-core machine; one thread keeps them quick. Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CHARS = set("_-!'(),.:;? abcdefghijklmnopqrstuvwxyz")


def voiced(c: str) -> bool:
    return c.lower() in CHARS


def test_normalisation_spells_out_numbers_and_counts_what_it_changed_or_dropped():
    from modelplex_tts.normalize import normalize

    n = normalize("Dr. Who paid $12.50 & 3% on the 21st in 1999 — naïve 🙂", voiced)
    assert n.text == (
        "doctor Who paid twelve dollars, fifty cents and three percent on the twenty-first in "
        "nineteen ninety-nine -- naive"
    )
    assert n.normalized == len("Dr.") + len("$12.50") + 1 + len("3%") + len("21st") + len("1999") + 1 + 1
    assert (n.dropped, n.dropped_chars) == (1, "🙂")
    assert normalize("$3 and 1,234", voiced).text == "three dollars and one thousand, two hundred and thirty-four"
    assert normalize("🙂🚀", voiced) == normalize("🙂🚀", voiced).__class__("", 0, 2, "🙂🚀")


def test_the_character_processor_is_torchaudios_after_normalisation(tmp_path):
    from torchaudio.pipelines import TACOTRON2_GRIFFINLIM_CHAR_LJSPEECH

    from modelplex_tts.processors import text_processor

    processor = text_processor("auto", 38)
    prepared = processor.prepare("Hello, World! It's 5 o'clock [sic] *now*.")
    reference, _ = TACOTRON2_GRIFFINLIM_CHAR_LJSPEECH.get_text_processor()(prepared.text)
    assert list(prepared.tokens) == reference[0].tolist()
    assert prepared.text == "Hello, World! It's five o'clock sic now."
    assert (prepared.characters_dropped, prepared.dropped) == (4, "[]*")


def test_the_nvidia_processor_uses_deeplearningexamples_symbol_ids():
    from modelplex_tts.processors import text_processor

    processor = text_processor("auto", 148)
    assert processor.name == "nvidia"
    # _pad, "-", then !'(),.:;? and space, then A-Z (12..37), a-z (38..63).
    assert list(processor.prepare("Ab-c!").tokens) == [38, 39, 1, 40, 2]
    with pytest.raises(ModelLoadError, match="fits none of the text processors"):
        text_processor("auto", 50)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_in_process("tacotron2-griffinlim", save_tacotron(tmp_path_factory.mktemp("t") / "t.pt"))


def test_the_stepwise_decoder_equals_tacotron2_infer_with_the_same_dropout(model, monkeypatch):
    """torchaudio's own infer, its pre-net drawing the same masks from the same generator."""
    from torchaudio.models import tacotron2

    prepared = model.prepare("The same dropout, the same frames.")
    generator = torch.Generator().manual_seed(model.settings.seed)

    def prenet(self, x):
        for linear in self.layers:
            x = F.relu(linear(x))
            x = x * torch.bernoulli(x.new_full((x.shape[1],), 0.5), generator=generator)[None] * 2.0
        return x

    taco = model.decoder.model
    monkeypatch.setattr(tacotron2._Prenet, "forward", prenet)
    monkeypatch.setattr(taco.decoder, "decoder_max_step", 24)
    monkeypatch.setattr(taco.decoder, "gate_threshold", 1.0)
    with torch.inference_mode(), pytest.warns(UserWarning, match="max decoder steps"):
        expected, lengths, _ = taco.infer(torch.tensor([list(prepared.tokens)]))
    sentence = model.start(prepared, SynthesisOptions())
    while not sentence.utterance.finished:
        model.decoder.decode([sentence.utterance], 5)
    mel = model.decoder.postnet_window(sentence.utterance, 0, len(sentence.utterance.frames))
    assert lengths.tolist() == [24] and mel.shape == expected[0].shape
    torch.testing.assert_close(mel, expected[0], atol=1e-5, rtol=1e-5)


def test_windows_of_the_postnet_equal_the_postnet_of_the_whole_sentence(model):
    sentence = model.start(model.prepare("Windows of the postnet."), SynthesisOptions())
    while not sentence.utterance.finished:
        model.decoder.decode([sentence.utterance], 7)
    u = sentence.utterance
    whole = model.decoder.postnet_window(u, 0, 24)
    for start, end in ((0, 5), (5, 13), (13, 24), (9, 10)):
        torch.testing.assert_close(model.decoder.postnet_window(u, start, end), whole[:, start:end], atol=1e-6, rtol=0)


def test_a_long_sentence_is_vocoded_in_overlapping_pieces_before_it_is_decoded(model):
    """Pieces come out while the sentence is still decoding; all but the last overlap the next."""
    sentence = model.start(model.prepare("A sentence vocoded in pieces."), SynthesisOptions())
    seen = []
    while not sentence.done:
        [pieces] = model.step([sentence])
        seen.append((len(sentence.utterance.frames), [(p.audio.numel(), p.tail, p.final) for p in pieces]))
    first = next(i for i, (_, pieces) in enumerate(seen) if pieces)
    assert seen[first][0] < 24, "the first piece waited for the whole sentence"
    pieces = [p for _, ps in seen for p in ps]
    hop = 256
    # A piece of 8 frames, cut half a frame into the next; the last takes the 16 frames left
    # (fewer than Griffin-Lim's context of 8 would remain after another piece of 8).
    assert pieces == [(8 * hop + hop // 2, hop, False), (16 * hop + hop // 2, 0, True)]


@pytest.mark.parametrize("rate", [0.25, 0.7, 1.3, 2.0, 4.0])
def test_a_speaking_rate_interpolates_frames_as_torch_interpolate_does(rate):
    """Frame centres aligned (align_corners=False), the count rounded rather than floored."""
    from modelplex_tts.rate import TimeStretch

    stretch = TimeStretch(rate)
    for decoded in (1, 2, 5, 24, 101):
        mel = torch.randn(80, decoded)
        n = stretch.frames(decoded)
        assert n == max(1, int(decoded / rate + 0.5))
        got = stretch.stretch(mel, 0, 0, n, decoded)
        common = int(decoded / rate)  # interpolate's count: floored
        if common not in (0, decoded):  # (it refuses 0 frames, and copies its input to as many)
            want = F.interpolate(
                mel[None], scale_factor=1 / rate, mode="linear", align_corners=False, recompute_scale_factor=False
            )[0]
            # interpolate computes source positions in float32: ~1e-5 of a frame off at frame 100
            torch.testing.assert_close(got[:, :common], want, atol=2e-4, rtol=0)
        # Frames past interpolate's (the rounding's one, at most) repeat the sentence's last frame.
        if n > common and (n - 0.5) * rate - 0.5 >= decoded - 1:
            torch.testing.assert_close(got[:, -1], mel[:, -1], atol=0, rtol=0)
        # Any window, given the frames it reads, gives the whole's frames there.
        for start, end in ((0, 1), (n // 3, n // 2 + 1), (max(0, n - 3), n)):
            lo, hi = stretch.sources(start, end, decoded)
            torch.testing.assert_close(
                stretch.stretch(mel[:, lo:hi], lo, start, end, decoded), got[:, start:end], atol=0, rtol=0
            )
    with pytest.raises(ValueError, match="positive"):
        TimeStretch(0.0)


@pytest.mark.parametrize("rate", [0.25, 0.6, 1.7, 3.0, 4.0])
def test_at_a_speaking_rate_pieces_come_while_decoding_and_read_the_whole_sentences_mel(model, rate, monkeypatch):
    """Each window a piece is vocoded from, stretched while the sentence was still decoding,
    equals the stretched mel of the whole sentence there; the pieces add up to
    floor(T / rate + 1/2) frames of audio."""
    from modelplex_tts.model import TacotronSynthesizer

    windows = []
    mel_of = TacotronSynthesizer._mel

    def recording(self, sentence, start, end):
        out = mel_of(self, sentence, start, end)
        windows.append((start, end, sentence.utterance.finished, out))
        return out

    monkeypatch.setattr(TacotronSynthesizer, "_mel", recording)
    sentence = model.start(model.prepare("A sentence vocoded in pieces."), SynthesisOptions(speaking_rate=rate))
    pieces = []
    while not sentence.done:
        [out] = model.step([sentence])
        pieces.extend(out)
    frames = max(1, int(24 / rate + 0.5))
    overlap = 256 // 2
    audio = sum(p.audio.numel() for p in pieces) - sum(2 * overlap for p in pieces[:-1])
    assert audio == frames * 256
    assert [p.final for p in pieces] == [False] * (len(pieces) - 1) + [True]
    if frames > 8 + 8 + 10:  # room for a piece before the end: a piece of 8, Griffin-Lim's 8 and the postnet's 10
        assert not windows[0][2], "the first piece waited for the whole sentence"
    whole = mel_of(model, sentence, 0, frames)
    for start, end, _, mel in windows:
        torch.testing.assert_close(mel, whole[:, start:end], atol=1e-6, rtol=0)


def test_the_griffin_lim_vocoder_is_torchaudios_from_zero_phases():
    import torchaudio

    from modelplex_tts.vocoders import GriffinLimVocoder

    mel = torch.randn(80, 30) * 0.5 - 3
    ours = GriffinLimVocoder(n_iter=8).vocode(mel, torch.Generator())
    spec = torchaudio.transforms.InverseMelScale(
        n_stft=513, n_mels=80, sample_rate=22050, f_min=0.0, f_max=8000.0, mel_scale="slaney", norm="slaney"
    )(torch.exp(mel))
    theirs = torchaudio.transforms.GriffinLim(
        n_fft=1024, n_iter=8, win_length=1024, hop_length=256, power=1, length=29 * 256, rand_init=False
    )(spec)
    assert ours.shape == (30 * 256,)
    torch.testing.assert_close(ours[: 29 * 256], theirs)


def test_the_wavernn_vocoder_is_torchaudios_infer_with_its_own_generator():
    from torchaudio.functional import mu_law_decoding
    from torchaudio.models import WaveRNN

    from modelplex_tts.vocoders import WaveRNNVocoder

    torch.manual_seed(0)
    wavernn = WaveRNN(**TINY_WAVERNN).eval()
    mel = torch.randn(80, 3) - 4
    ours = WaveRNNVocoder(wavernn).vocode(mel, torch.Generator().manual_seed(11))
    # The bundle's vocoder: the same mel scaling, torchaudio's infer on the default generator.
    spec = torch.clamp((-100.0 - 20 * torch.log10(torch.clamp(torch.exp(mel), min=1e-5))) / -100.0, 0, 1)
    torch.manual_seed(11)
    with torch.inference_mode():
        waveform, _ = wavernn.infer(spec[None])
    # The bundle turns the sampled classes into floats and back with int(), which truncates
    # some of them one level down; rounding gives back the classes sampled, which ours uses.
    labels = torch.clamp((torch.clamp(waveform, -1, 1) + 1.0) * 255 / 2, 0, 255).round().int()
    theirs = mu_law_decoding(labels, 256)[0, 0]
    assert ours.shape == (3 * 275,)
    torch.testing.assert_close(ours, theirs)


def test_a_waveglow_checkpoint_in_deeplearningexamples_layout_loads(tmp_path):
    from modelplex_tts.waveglow import WaveGlow, load_waveglow

    path = save_waveglow(tmp_path / "waveglow.pt", seed=1)
    ckpt = torch.load(path, weights_only=True)
    assert all(k.startswith("module.") for k in ckpt["state_dict"])
    assert (
        "module.WN.0.in_layers.0.weight_g" in ckpt["state_dict"] and "module.WN.0.start.weight_v" in ckpt["state_dict"]
    )
    model = load_waveglow(path)
    torch.manual_seed(1)
    fresh = WaveGlow(**TINY_WAVEGLOW)
    for wn in fresh.WN:
        torch.nn.init.normal_(wn.end.weight, std=0.05)
    loaded = model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in fresh.state_dict().items())
    mel = torch.randn(1, 80, 6) - 5
    audio = model.infer(mel, sigma=0.5, generator=torch.Generator().manual_seed(2))
    assert audio.shape == (1, 6 * 256) and torch.isfinite(audio).all()
    again = model.infer(mel, sigma=0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(audio, again)
    assert not torch.equal(audio, model.infer(mel, sigma=0.5, generator=torch.Generator().manual_seed(3)))


def test_a_waveglow_checkpoint_with_a_missing_or_extra_key_fails_naming_the_keys(tmp_path):
    from modelplex_tts.waveglow import load_waveglow

    path = save_waveglow(tmp_path / "waveglow.pt")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["module.WN.1.cond_layers.0.weight_g"]
    ckpt["state_dict"]["module.WN.0.spare.weight"] = torch.zeros(2)
    torch.save(ckpt, path)
    with pytest.raises(ModelLoadError) as e:
        load_waveglow(path)
    assert "missing keys [WN.1.cond_layers.0.weight_g]" in str(e.value)
    assert "unexpected keys [WN.0.spare.weight]" in str(e.value)


def test_a_pickled_waveglow_module_is_refused_with_how_to_convert_it(tmp_path):
    from modelplex_tts.waveglow import WaveGlow, load_waveglow

    path = tmp_path / "waveglow_256channels.pt"
    torch.save({"model": WaveGlow(**TINY_WAVEGLOW), "iteration": 1}, path)  # NVIDIA/waveglow's format
    with pytest.raises(ModelLoadError) as e:
        load_waveglow(path)
    message = str(e.value)
    assert "pickled" in message and "weights_only=False)['model']" in message and "'state_dict'" in message


def test_waveglow_checkpoints_without_weight_norm_or_with_one_cond_layer_load_the_same(tmp_path):
    from modelplex_tts.waveglow import load_waveglow

    path = save_waveglow(tmp_path / "waveglow.pt", seed=4)
    reference = load_waveglow(path)
    ckpt = torch.load(path, weights_only=True)
    sd = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    # NVIDIA/waveglow's later layout: one cond_layer per WN, and weight norm removed.
    merged = {}
    for k in range(TINY_WAVEGLOW["n_flows"]):
        for part in ("weight_g", "weight_v", "bias"):
            keys = [f"WN.{k}.cond_layers.{i}.{part}" for i in range(2)]
            merged[f"WN.{k}.cond_layer.{part}"] = torch.cat([sd.pop(key) for key in keys])
    sd.update(merged)
    for key in [k for k in sd if k.endswith("weight_g")]:
        stem = key.removesuffix("_g")
        g, v = sd.pop(key), sd.pop(stem + "_v")
        sd[stem] = g * v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1)
    torch.save({"config": ckpt["config"], "state_dict": sd}, tmp_path / "other.pt")
    other = load_waveglow(tmp_path / "other.pt")
    mel = torch.randn(1, 80, 5) - 5
    a = reference.infer(mel, sigma=0.7, generator=torch.Generator().manual_seed(0))
    b = other.infer(mel, sigma=0.7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_waveglow_denoiser_strength_is_a_setting(tmp_path):
    taco = save_tacotron(tmp_path / "t.pt")
    glow = save_waveglow(tmp_path / "w.pt")

    def pieces(strength):
        model = load_in_process("tacotron2-waveglow", taco, vocoder_weights=str(glow), denoiser_strength=strength)
        sentence = model.start(model.prepare("Denoise me."), SynthesisOptions())
        out = []
        while not sentence.done:
            out += model.step([sentence])[0]
        return torch.cat([p.audio for p in out])

    plain, denoised = pieces(0.0), pieces(0.5)
    assert plain.shape == denoised.shape
    assert not torch.equal(plain, denoised)


def test_batch_invariance_pads_the_decoder_on_request_and_by_default_only_on_cuda(tmp_path):
    path = save_tacotron(tmp_path / "t.pt")
    assert load_in_process("tacotron2-griffinlim", path, batch_invariant=None).decoder.rows == 0  # cpu
    assert load_in_process("tacotron2-griffinlim", path, batch_invariant=True).decoder.rows == 8  # max_batch_size

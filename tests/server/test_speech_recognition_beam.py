"""CTC beam search with a lexicon and an n-gram LM (decoder = "beam", torchaudio's ctc_decoder).

The decoder unit is fed crafted log-probabilities: with no LM and a wide beam it reproduces
greedy decoding on clear emissions; a lexicon keeps the output to its words; a hand-written
ARPA LM breaks an acoustic tie its way. Through gRPC, a tiny random Wav2Vec2ForCTC served
with a lexicon and an LM gives finals equal to the in-process beam search of each segment
(transformers' logits, torchaudio's decoder), and two LMs steer it to their own words. Bad
settings fail at load with a message that names the problem."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
import torch

from modelplex import ConfigError, ModelLoadError
from modelplex.server.config import ModelConfig
from modelplex.tasks.speech_recognition.beam import BeamDecoder, BeamOptions
from modelplex.tasks.speech_recognition.ctc import greedy_transcript
from modelplex.tasks.speech_recognition.settings import SpeechRecognitionSettings
from modelplex.testing import running_server
from modelplex_client.pb import speech_recognition_pb2 as pb
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc
from modelplex_speech.demo import VOCAB
from speech_audio import RATE, clip, from_linear16, linear16
from speech_models import w2v_model

pytest.importorskip("flashlight.lib.text.decoder", reason="decoder = 'beam' needs flashlight-text")

BLANK, DELIMITER = 0, VOCAB.index("|")
IGNORED = frozenset({1, 2, 3})  # <s>, </s>, <unk>
FRAME_S = 0.02


class Labels:
    """What greedy_transcript reads of a model."""

    labels = VOCAB
    blank = BLANK
    word_delimiter = "|"
    ignored_labels = IGNORED


def write_arpa(path, unigrams: dict[str, float], bigrams: dict[str, float] = {}) -> str:  # noqa: B006
    """A bigram ARPA file (log10 probabilities, backoff 0)."""
    lines = ["\\data\\", f"ngram 1={len(unigrams)}", f"ngram 2={len(bigrams)}", "", "\\1-grams:"]
    lines += [f"{p}\t{w}" + ("" if w == "</s>" else "\t0") for w, p in unigrams.items()]
    lines += ["", "\\2-grams:", *(f"{p}\t{w}" for w, p in bigrams.items()), "", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return str(path)


def lm_favouring(path, word: str, words) -> str:
    """A unigram-ish LM where ``word`` is likely and the other ``words`` are not."""
    unigrams = {"<unk>": -5.0, "<s>": -99.0, "</s>": -0.5}
    unigrams.update({w: (-0.2 if w == word else -4.0) for w in words})
    return write_arpa(path, unigrams)


def emissions(frames) -> torch.Tensor:
    """Log-probabilities: each frame a label (certain) or a {label: probability} dict."""
    scores = torch.full((len(frames), len(VOCAB)), -12.0)
    for t, frame in enumerate(frames):
        for label, p in (frame if isinstance(frame, dict) else {frame: 1.0}).items():
            scores[t, VOCAB.index(label)] = math.log(p)
    return torch.log_softmax(scores, -1)


def spell(text: str) -> list[str]:
    """CTC frames for ``text``: each character on a frame or two, blanks between, | between words."""
    frames: list[str] = ["<pad>"]
    for i, word in enumerate(text.split()):
        if i:
            frames += ["|", "<pad>"]
        for j, c in enumerate(word):
            frames += [c] * (1 + (i + j) % 2) + ["<pad>"]
    return frames


def decoder(**options) -> BeamDecoder:
    return BeamDecoder(VOCAB, BLANK, "|", IGNORED, FRAME_S, BeamOptions(**options))


# -- the decoder unit --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_a_wide_beam_without_lm_reproduces_greedy_on_clear_emissions(seed):
    rng = np.random.default_rng(seed)
    # One label clearly ahead on each frame; runs, blanks and delimiters as a CTC model emits them.
    letters = len(VOCAB) - 5
    odds = np.array([0.35, 0.15] + [0.5 / letters] * letters)
    runs = rng.choice([BLANK, DELIMITER, *range(5, len(VOCAB))], size=60, p=odds)
    best = torch.from_numpy(np.repeat(runs, rng.integers(1, 4, size=60)))
    scores = torch.from_numpy(rng.normal(0, 1, (len(best), len(VOCAB))).astype(np.float32))
    scores[torch.arange(len(best)), best] += 12.0
    greedy = greedy_transcript(Labels, scores.argmax(-1).tolist(), FRAME_S)
    assert len(greedy.words) >= 3
    for beam in (decoder(beam_size=200), decoder(beam_size=200, word_score=0.0, beam_threshold=100)):
        got = beam.decode(scores)
        assert got.text == greedy.text
        assert got.words == greedy.words


def test_greedy_word_times_are_kept_for_runs_of_a_label():
    scores = emissions(spell("THE CAT SAT"))
    greedy = greedy_transcript(Labels, scores.argmax(-1).tolist(), FRAME_S)
    got = decoder(beam_size=100).decode(scores)
    assert got.text == greedy.text == "THE CAT SAT"
    assert [(w.text, round(w.start_s, 4), round(w.end_s, 4)) for w in got.words] == [
        (w.text, round(w.start_s, 4), round(w.end_s, 4)) for w in greedy.words
    ]


def test_the_lexicon_keeps_the_output_to_its_words(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("cat\ncar\nbat\n")  # words alone: spelled by their characters (case-mapped)
    scores = emissions(spell("CART BAD"))  # neither is a word of the lexicon
    assert greedy_transcript(Labels, scores.argmax(-1).tolist(), FRAME_S).text == "CART BAD"
    got = decoder(lexicon=str(lexicon)).decode(scores)
    assert got.text and set(got.text.split()) <= {"cat", "car", "bat"}
    assert [w.text for w in got.words] == got.text.split()
    assert all(0 <= w.start_s < w.end_s <= len(scores) * FRAME_S for w in got.words)
    # Random emissions too: whatever comes out is lexicon words.
    rng = np.random.default_rng(0)
    noise = torch.log_softmax(torch.from_numpy(rng.normal(0, 3, (200, len(VOCAB))).astype(np.float32)), -1)
    words = decoder(lexicon=str(lexicon), word_score=2.0).decode(noise).text.split()
    assert words and set(words) <= {"cat", "car", "bat"}


def test_a_lexicon_in_the_flashlight_format_with_its_trailing_delimiter(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("THE T H E |\nCAT C A T |\nSAT S A T |\n")  # torchaudio's librispeech layout
    scores = emissions(spell("THE CAT SAT"))
    got = decoder(lexicon=str(lexicon)).decode(scores)
    greedy = greedy_transcript(Labels, scores.argmax(-1).tolist(), FRAME_S)
    assert got.text == "THE CAT SAT"
    assert got.words == greedy.words


def test_the_lm_breaks_an_acoustic_tie_its_way(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("CAT\nCAR\nBAT\n")
    tie = emissions(["<pad>", "C", "<pad>", "A", {"T": 0.5, "R": 0.5}, "<pad>"])
    for word in ("CAT", "CAR"):
        lm = lm_favouring(tmp_path / f"{word}.arpa", word, ("CAT", "CAR", "BAT"))
        assert decoder(lexicon=str(lexicon), lm=lm, lm_weight=1.0).decode(tie).text == word
    # A bigram LM: the word after "THE" decides, while the same unigram odds would not.
    lexicon.write_text("THE\nCAT\nCAR\n")
    bigram = write_arpa(
        tmp_path / "bigram.arpa",
        {"<unk>": -5, "<s>": -99, "</s>": -1, "THE": -0.5, "CAT": -1.0, "CAR": -0.9},
        {"THE CAT": -0.1, "THE CAR": -2.0},
    )
    tie = emissions([*spell("THE"), "|", "<pad>", "C", "<pad>", "A", {"T": 0.5, "R": 0.5}, "<pad>"])
    assert decoder(lexicon=str(lexicon), lm=bigram, lm_weight=1.0).decode(tie).text == "THE CAT"
    alone = emissions(["<pad>", "C", "<pad>", "A", {"T": 0.5, "R": 0.5}, "<pad>"])
    assert decoder(lexicon=str(lexicon), lm=bigram, lm_weight=1.0).decode(alone).text == "CAR"


def test_a_space_delimiter_and_labels_that_are_no_token_names():
    """DeepSpeech's labels: "_" blank, a space between words."""
    labels = ["_", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", " "]
    space = len(labels) - 1
    scores = torch.full((9, len(labels)), -12.0)
    for t, label in enumerate("_HI_ _YO_"):
        scores[t, labels.index(label)] = 0.0
    beam = BeamDecoder(labels, 0, " ", frozenset(), FRAME_S, BeamOptions(beam_size=50))
    assert beam.names[space] == "|" and beam.decode(scores).text == "HI YO"


# -- bad settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lexicon": "x.txt"}, 'lexicon only apply to decoder = "beam"'),
        ({"beam_size": 8, "lm_weight": 1}, 'beam_size, lm_weight only apply to decoder = "beam"'),
        ({"decoder": "beam", "lm": "x.arpa"}, "lm needs a lexicon"),
        ({"decoder": "beam", "lexicon": "x.txt", "lm_weight": 1}, "lm_weight is set but no lm is"),
        ({"decoder": "beam", "beam_size": 0}, "greater than or equal to 1"),
        ({"decoder": "viterbi"}, "'greedy' or 'beam'"),
    ],
)
def test_settings_that_do_not_fit_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        SpeechRecognitionSettings(**fields)


def test_files_that_cannot_be_read_fail_at_load(tmp_path):
    good = tmp_path / "lexicon.txt"
    good.write_text("CAT\n")
    with pytest.raises(ModelLoadError, match=r"the lexicon file .*missing.txt does not exist"):
        decoder(lexicon=str(tmp_path / "missing.txt"))
    with pytest.raises(ModelLoadError, match="is a folder"):
        decoder(lexicon=str(tmp_path))
    (tmp_path / "bad.txt").write_text("CAT\nNAÏVE\n")
    with pytest.raises(ModelLoadError, match=r"bad.txt, line 2: the model has no label 'Ï' to spell 'NAÏVE'"):
        decoder(lexicon=str(tmp_path / "bad.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ModelLoadError, match="holds no words"):
        decoder(lexicon=str(tmp_path / "empty.txt"))
    with pytest.raises(ModelLoadError, match=r"the language model file .*none.arpa does not exist"):
        decoder(lexicon=str(good), lm=str(tmp_path / "none.arpa"))
    (tmp_path / "garbled.arpa").write_text("\\data\\\nngram 1=two\n")
    with pytest.raises(ModelLoadError, match=r"cannot load the language model .*garbled.arpa"):
        decoder(lexicon=str(good), lm=str(tmp_path / "garbled.arpa"))


def test_without_flashlight_text_the_load_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "flashlight.lib.text.decoder", None)  # import fails
    with pytest.raises(ModelLoadError, match="pip install flashlight-text"):
        decoder()


# -- through gRPC, with a real tiny model -----------------------------------------------------

WORDS = ("AN", "ONE", "TEN", "NET", "TOE", "EAT")


def _reference(samples, lexicon: str, lm: str, **options) -> str:
    """The in-process beam search of one segment: transformers' logits, torchaudio's decoder."""
    from torchaudio.models.decoder import ctc_decoder
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    from speech_models import speech_dirs

    path = speech_dirs()["w2v"]
    processor, model = Wav2Vec2Processor.from_pretrained(path), Wav2Vec2ForCTC.from_pretrained(path).eval()
    with torch.inference_mode():
        logits = model(processor(samples, sampling_rate=RATE, return_tensors="pt")["input_values"]).logits
    beam = ctc_decoder(lexicon, VOCAB, lm=lm, blank_token="<pad>", sil_token="|", **options)
    return " ".join(beam(torch.log_softmax(logits, -1).contiguous())[0][0].words)


@pytest.fixture(scope="module")
def beam_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam")
    lexicon = root / "lexicon.txt"
    lexicon.write_text("".join(f"{w}\n" for w in WORDS))
    flashlight_lexicon = root / "flashlight.txt"  # the reference's: spelled, in the model's labels
    flashlight_lexicon.write_text("".join(f"{w} {' '.join(w)}\n" for w in WORDS))
    return {
        "lexicon": str(lexicon),
        "flashlight": str(flashlight_lexicon),
        "one": lm_favouring(root / "one.arpa", "ONE", WORDS),
        "ten": lm_favouring(root / "ten.arpa", "TEN", WORDS),
    }


def _finals(address, model, audio):
    def requests():
        cfg = pb.RecognitionConfig(
            encoding=pb.RecognitionConfig.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE, enable_word_time_offsets=True
        )
        yield pb.StreamingRecognizeRequest(
            streaming_config=pb.StreamingRecognitionConfig(model=model, config=cfg, interim_results=True)
        )
        for i in range(0, len(audio), 4000):
            yield pb.StreamingRecognizeRequest(audio_content=audio[i : i + 4000])

    with grpc.insecure_channel(address) as channel:
        responses = list(pb_grpc.SpeechRecognitionStub(channel).StreamingRecognize(requests(), timeout=120))
    return [r for m in responses for r in m.results if r.is_final], [r for m in responses for r in m.results]


def test_finals_through_grpc_are_the_in_process_beam_search_and_follow_the_lm(beam_files):
    beam = {"decoder": "beam", "lexicon": beam_files["lexicon"], "word_score": 3.0, "lm_weight": 3.0}
    models = [
        w2v_model("one", **beam, lm=beam_files["one"]),
        w2v_model("ten", **beam, lm=beam_files["ten"]),
    ]
    audio = linear16(clip(seed=0, utterances=2))
    samples = from_linear16(audio)
    with running_server({"models": models}) as server:
        from modelplex_client import Client
        from modelplex_client.pb import speech_recognition_pb2

        with Client(server.address) as client:
            info = speech_recognition_pb2.SpeechRecognitionInfo()
            assert client.get_model("one").task_info.Unpack(info) and info.decoder == "beam"
        by_lm = {}
        for name in ("one", "ten"):
            finals, everything = _finals(server.address, name, audio)
            assert len(finals) == 2 and len(everything) > 2
            for r in finals:
                segment = samples[round(r.result_start_ms * RATE / 1000) : round(r.result_end_ms * RATE / 1000)]
                expected = _reference(
                    segment, beam_files["flashlight"], beam_files[name], word_score=3.0, lm_weight=3.0
                )
                alternative = r.alternatives[0]
                assert alternative.transcript == expected
                assert [w.word for w in alternative.words] == expected.split()
                assert all(
                    r.result_start_ms <= w.start_ms < w.end_ms <= r.result_end_ms + 1e-3 for w in alternative.words
                )
            by_lm[name] = [w for r in finals for w in r.alternatives[0].transcript.split()]
    # Acoustics of random weights say little; each LM pulls the words its way.
    assert by_lm["one"].count("ONE") > by_lm["ten"].count("ONE")
    assert by_lm["ten"].count("TEN") > by_lm["one"].count("TEN")


def test_bad_beam_settings_fail_the_load_precisely(tmp_path, beam_files):
    with running_server({"models": []}) as server:
        registry = server.server.registry

        def load(**fields):
            server.call(registry.load(ModelConfig.model_validate(w2v_model("bad", **fields))))

        with pytest.raises(ModelLoadError, match=r"model 'bad': the lexicon file .*nope.txt does not exist"):
            load(decoder="beam", lexicon=str(tmp_path / "nope.txt"))
        with pytest.raises(ModelLoadError, match=r"model 'bad': cannot load the language model"):
            (tmp_path / "bad.arpa").write_text("not an arpa file\n")
            load(decoder="beam", lexicon=beam_files["lexicon"], lm=str(tmp_path / "bad.arpa"))
        with pytest.raises(ConfigError, match="lm needs a lexicon"):
            load(decoder="beam", lm=beam_files["one"])
        assert registry.list() == []  # nothing half-loaded stays

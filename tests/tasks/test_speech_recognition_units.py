"""The speech task's pieces on their own: the streaming resampler, the segmenter, CTC decoding."""

from __future__ import annotations

import types

import pytest
import torch
import torchaudio.functional as F

from modelplex.tasks.speech_recognition.audio import StreamResampler
from modelplex.tasks.speech_recognition.ctc import greedy_transcript
from modelplex.tasks.speech_recognition.segmenter import Segmenter, SegmentPolicy


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
@pytest.mark.parametrize("chunk", [97, 441, 100_000])
def test_the_stream_resampler_equals_a_whole_clip_resample(rate, chunk):
    torch.manual_seed(rate)
    x = torch.randn(rate // 4 + 777)
    r = StreamResampler(rate, 16000)
    parts = [r.push(x[i : i + chunk]) for i in range(0, len(x), chunk)] + [r.push(torch.zeros(0), final=True)]
    got, want = torch.cat(parts), F.resample(x, rate, 16000)
    assert got.shape == want.shape
    # The same kernel over the same samples; only the convolution's summation order may differ.
    assert torch.allclose(got, want, atol=1e-6)


def test_the_stream_resampler_passes_the_models_rate_through():
    x = torch.randn(1000)
    assert torch.equal(StreamResampler(16000, 16000).push(x), x)


def feed(seg, probs, frame=10):
    spans = []
    for i, p in enumerate(probs):
        span = seg.feed(i * frame, (i + 1) * frame, p)
        if span:
            spans.append(span)
    return spans


def test_a_segment_ends_after_enough_silence_and_keeps_its_padding():
    seg = Segmenter(SegmentPolicy(min_silence=30, pad=10, max_length=10_000, align=5))
    probs = [0.0] * 5 + [0.9] * 6 + [0.1] * 2 + [0.9] + [0.1] * 3 + [0.0] * 4
    # speech 50..110, a short pause (kept), speech 130..140, then silence from 140: ends at 170.
    assert feed(seg, probs) == [(40, 150)]
    assert not seg.speech and seg.start >= 150


def test_a_segment_is_cut_at_the_maximum_length_and_speech_goes_on():
    seg = Segmenter(SegmentPolicy(min_silence=30, pad=0, max_length=40, align=1))
    assert feed(seg, [0.9] * 10) == [(0, 40), (40, 80)]
    assert seg.speech and seg.start == 80


def test_no_segment_without_speech():
    seg = Segmenter(SegmentPolicy(min_silence=30, pad=10, max_length=40, align=1))
    assert feed(seg, [0.2] * 50) == []
    assert seg.start == 490 and not seg.speech


def test_greedy_ctc_collapses_repeats_drops_blanks_and_times_words():
    model = types.SimpleNamespace(labels=["-", "|", "A", "B", "<s>"], blank=0, word_delimiter="|", ignored_labels={4})
    ids = [0, 2, 2, 0, 2, 1, 1, 3, 4, 3, 0, 0]
    t = greedy_transcript(model, ids, 0.02)
    assert t.text == "AA BB"
    assert [(w.text, round(w.start_s, 2), round(w.end_s, 2)) for w in t.words] == [("AA", 0.02, 0.1), ("BB", 0.14, 0.2)]


def test_times_on_the_wire_are_milliseconds_to_the_microsecond():
    from modelplex.tasks.speech_recognition.servicer import _ms

    assert (0.1 + 0.2) * 1000 != 300.0 and _ms(0.1 + 0.2) == 300.0
    assert _ms(0.0000004) == 0.0 and _ms(1.2345678) == 1234.568

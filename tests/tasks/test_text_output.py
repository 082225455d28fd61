"""Incremental detokenization and stop sequences, on their own."""

from __future__ import annotations

import pytest

from modelplex.tasks.text_generation.output import IncrementalDetokenizer, StopMatcher
from text_models import tokenizer


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


TEXTS = ["héllo wörld", "日本語のテキスト", "emoji 🙂🚀 done", "plain ascii text", "naïve café 🙂"]


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_never_split_a_character_and_add_up_to_the_text(tok, text):
    ids = tok(text)["input_ids"]
    detok = IncrementalDetokenizer(lambda xs: tok.decode(list(xs), skip_special_tokens=True))
    deltas = [detok.add(i) for i in ids] + [detok.flush()]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_the_tokenizer_does_split_characters(tok):
    assert any("\ufffd" in tok.decode([i]) for i in tok("日本語 🙂")["input_ids"])


def test_an_invalid_byte_sequence_still_comes_out_at_the_end(tok):
    lone = [i for i in range(len(tok)) if tok.decode([i]) == "\ufffd"][:1]
    detok = IncrementalDetokenizer(lambda xs: tok.decode(list(xs)))
    assert detok.add(lone[0]) == ""
    assert detok.flush() == "\ufffd"


def feed(stops, pieces):
    m = StopMatcher(stops)
    out = []
    for p in pieces:
        out.append(m.feed(p))
        if m.matched is not None:
            return out, m.matched
    out.append(m.flush())
    return out, None


def test_stop_sequence_spanning_pieces_is_found_and_not_emitted():
    out, matched = feed(["STOP"], ["hello S", "T", "OP and more"])
    assert matched == "STOP" and "".join(out) == "hello "
    assert out[0] == "hello "  # "S" is held back: it may start "STOP"


def test_held_text_is_released_when_it_is_not_a_stop():
    out, matched = feed(["STOP"], ["a S", "T", "x"])
    assert matched is None and out == ["a ", "", "STx", ""]


def test_earliest_of_several_stop_sequences_wins():
    out, matched = feed(["world", "lo w"], ["hel", "lo world"])
    assert matched == "lo w" and "".join(out) == "hel"


def test_text_held_at_the_end_is_flushed():
    out, matched = feed(["\n\n"], ["line\n"])
    assert matched is None and "".join(out) == "line\n"

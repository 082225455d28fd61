"""CTC greedy decoding with word time offsets (the server's, for every CTC recognizer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelplex.tasks.speech_recognition.interface import Transcript, Word

__all__ = ["greedy_transcript"]


def greedy_transcript(model: Any, ids: Sequence[int], frame_s: float) -> Transcript:
    """The transcript of one segment from its best label per frame: repeats collapse, blanks
    and ignored labels drop out, the word delimiter separates words. A word starts at the
    first frame of its first character and ends after the last frame of its last one."""
    labels: Sequence[str] = model.labels
    blank: int = model.blank
    delimiter: str = model.word_delimiter
    ignored = model.ignored_labels
    words: list[Word] = []
    chars: list[str] = []
    start = end = 0
    previous = -1
    for frame, label in enumerate(ids):
        if label == previous:
            if chars and label != blank and label not in ignored and labels[label] != delimiter:
                end = frame + 1  # the character's run goes on
            continue
        previous = label
        if label == blank or label in ignored:
            continue
        text = labels[label]
        if text == delimiter or text.isspace():
            if chars:
                words.append(Word("".join(chars), start * frame_s, end * frame_s))
                chars = []
            continue
        if not chars:
            start = frame
        chars.append(text)
        end = frame + 1
    if chars:
        words.append(Word("".join(chars), start * frame_s, end * frame_s))
    return Transcript(" ".join(w.text for w in words), tuple(words))

"""CTC beam search with a lexicon and an n-gram language model: torchaudio's ``ctc_decoder``
(flashlight-text), configured per model by its task settings (``decoder = "beam"``).

:class:`BeamDecoder` is built when the model loads, from the model's labels and the
settings; everything that can be wrong (flashlight-text missing, a file that cannot be
read, a lexicon word the model cannot spell, an LM that does not parse) fails there with
a :class:`~modelplex.errors.ModelLoadError` that names the file and the line.

Lexicon file: one word per line, optionally followed by its spelling in the model's labels
separated by spaces (the flashlight/torchaudio format, ``hello h e l l o |``; a trailing word
delimiter is dropped, since the decoder inserts delimiters between words itself). A line
with the word alone is spelled by its characters. Spelling tokens match the labels exactly,
else upper-cased, else lower-cased (Wav2Vec 2.0's vocabularies are upper case). A word may
have several lines (several spellings).

The labels reach the decoder under names of their own (flashlight reads tokens and
lexicons split on whitespace, so a space label, DeepSpeech's word delimiter, cannot be a
token name): the blank, the word delimiter (the decoder's silence token), and one name per
other label.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelplex.errors import ModelLoadError
from modelplex.tasks.speech_recognition.interface import Transcript, Word

__all__ = ["BeamDecoder", "BeamOptions", "Lexicon", "read_lexicon"]

_BLANK = "<blank>"
_SILENCE = "<sil>"


@dataclass(frozen=True)
class BeamOptions:
    """The decoder's knobs (the task settings of the same names)."""

    lexicon: str | None = None
    lm: str | None = None
    beam_size: int = 50
    beam_threshold: float = 50.0
    lm_weight: float = 2.0
    word_score: float = 0.0


Lexicon = dict[str, list[tuple[int, ...]]]
"""A word's spellings, as label indices."""


def read_lexicon(path: str, labels: Sequence[str], delimiter: int, blank: int) -> Lexicon:
    """The lexicon file at ``path`` as label indices; ModelLoadError naming the line of a bad one."""
    index: dict[str, int] = {}
    for i, label in enumerate(labels):
        if i not in (blank, delimiter) and label and not label.isspace():
            index.setdefault(label, i)

    def token(t: str, where: str, word: str) -> int:
        for form in (t, t.upper(), t.lower()):
            if form in index:
                return index[form]
        raise ModelLoadError(
            f"lexicon {path}, {where}: the model has no label {t!r} to spell {word!r} "
            f"(its labels: {' '.join(repr(x) for x in labels)})"
        )

    text = _read_text(path, "lexicon")
    lexicon: Lexicon = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        word, spelling = fields[0], fields[1:] or list(fields[0])
        delimiter_names = {labels[delimiter], "|"} if 0 <= delimiter < len(labels) else {"|"}
        while spelling and spelling[-1] in delimiter_names:
            spelling.pop()
        if not spelling:
            raise ModelLoadError(f"lexicon {path}, line {number}: the word {word!r} has an empty spelling")
        ids = tuple(token(t, f"line {number}", word) for t in spelling)
        if ids not in lexicon.setdefault(word, []):
            lexicon[word].append(ids)
    if not lexicon:
        raise ModelLoadError(f"lexicon {path} holds no words: write one word per line (and optionally its spelling)")
    return lexicon


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelLoadError(f"the {what} file {path} does not exist") from None
    except IsADirectoryError:
        raise ModelLoadError(f"the {what} file {path} is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"cannot read the {what} file {path}: {e}") from None


def _check_readable(path: str, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"the {what} file {path} does not exist")
    if not p.is_file():
        raise ModelLoadError(f"the {what} file {path} is not a file")
    try:
        with p.open("rb") as f:
            f.read(1)
    except OSError as e:
        raise ModelLoadError(f"cannot read the {what} file {path}: {e}") from None


class BeamDecoder:
    """The beam search of one model: ``decode(emissions)`` gives a segment's transcript.

    flashlight's decoders keep state while they decode, so two threads (instances of the
    model) decoding at once use two decoders, built from the same files; a free one is reused."""

    def __init__(
        self,
        labels: Sequence[str],
        blank: int,
        delimiter: str,
        ignored: frozenset[int],
        frame_s: float,
        options: BeamOptions,
    ) -> None:
        try:
            import flashlight.lib.text.decoder  # noqa: F401
        except ImportError:
            raise ModelLoadError(
                'decoder = "beam" needs flashlight-text, which is not installed: pip install flashlight-text '
                "(or modelplex-speech[beam])"
            ) from None
        try:
            from torchaudio.models.decoder import ctc_decoder
        except (ImportError, RuntimeError) as e:
            raise ModelLoadError(
                f'decoder = "beam" needs torchaudio\'s ctc_decoder, which failed to import: {e}'
            ) from None
        self.labels = tuple(labels)
        self.blank = blank
        self.ignored = ignored
        self.frame_s = frame_s
        self.options = options
        self.delimiter = next(
            (i for i, x in enumerate(labels) if x == delimiter and i != blank),
            next((i for i, x in enumerate(labels) if x.isspace() and x and i != blank), -1),
        )
        self.names = _token_names(labels, blank, self.delimiter)
        self.lexicon: Lexicon | None = None
        self._folder = tempfile.TemporaryDirectory(prefix="modelplex-lexicon-")
        lexicon_file: str | None = None
        if options.lexicon is not None:
            self.lexicon = read_lexicon(options.lexicon, labels, self.delimiter, blank)
            lexicon_file = os.path.join(self._folder.name, "lexicon.txt")
            with open(lexicon_file, "w", encoding="utf-8") as f:
                for word, spellings in self.lexicon.items():
                    for ids in spellings:
                        f.write(f"{word} {' '.join(self.names[i] for i in ids)}\n")
        if options.lm is not None:
            _check_readable(options.lm, "language model")
        # The delimiter's name when the model has one; else a name no label has (never emitted).
        silence = self.names[self.delimiter] if self.delimiter >= 0 else _unused(self.names, _SILENCE)
        tokens = list(self.names) if self.delimiter >= 0 else [*self.names, silence]

        def build() -> Any:
            return ctc_decoder(
                lexicon=lexicon_file,
                tokens=tokens,
                lm=options.lm,
                beam_size=options.beam_size,
                beam_threshold=options.beam_threshold,
                lm_weight=options.lm_weight if options.lm is not None else 0.0,
                word_score=options.word_score,
                blank_token=self.names[blank],
                sil_token=silence,
                unk_word="<unk>",
            )

        self._build: Callable[[], Any] = build
        self._lock = threading.Lock()
        self._free: list[Any] = [self._make()]  # one now: a bad LM fails the load
        self._pad = len(tokens) - len(labels)

    def _make(self) -> Any:
        try:
            return self._build()
        except ModelLoadError:
            raise
        except Exception as e:  # KenLM's parse errors are RuntimeErrors with the file's position
            what = f"the language model {self.options.lm}" if self.options.lm else "the beam decoder"
            raise ModelLoadError(f"cannot load {what}: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        self._folder.cleanup()

    def decode(self, emissions: Any) -> Transcript:
        """The best hypothesis for one segment's (frames, labels) scores (logits or
        log-probabilities). Word times: from the frame of a word's first label to past the
        run of frames (by argmax) that carry its last label."""
        import torch

        scores = torch.log_softmax(emissions.detach().float().cpu(), dim=-1)
        if self._pad:  # the silence token the model lacks: never likely
            scores = torch.cat([scores, torch.full((len(scores), self._pad), -1e9)], dim=-1)
        if len(scores) == 0:
            return Transcript("")
        with self._lock:
            decoder = self._free.pop() if self._free else None
        if decoder is None:  # another instance's thread holds the first: a decoder of its own
            decoder = self._make()
        try:
            hypotheses = decoder(scores.contiguous()[None])[0]
        finally:
            with self._lock:
                self._free.append(decoder)
        if not hypotheses:
            return Transcript("")
        best = hypotheses[0]
        tokens = [int(t) for t in best.tokens]
        # flashlight's path starts with a silence before the first frame: step i is frame i - 1
        frames = [max(0, int(t) - 1) for t in best.timesteps]
        argmax = scores.argmax(-1).tolist()
        spans = self._spans(tokens, frames, argmax)
        if self.lexicon is not None:
            words = self._lexicon_words(list(best.words), spans)
        else:
            words = [self._word("".join(self.labels[i] for i, _, _ in span), span) for span in spans if span]
        return Transcript(" ".join(w.text for w in words), tuple(words))

    def _spans(self, tokens: list[int], frames: list[int], argmax: list[int]) -> list[list[tuple[int, int, int]]]:
        """The hypothesis' labels grouped by delimiters: (label, first frame, end frame) each."""
        groups: list[list[tuple[int, int, int]]] = [[]]
        for label, frame in zip(tokens, frames, strict=False):
            if label == self.delimiter or label >= len(self.labels):
                groups.append([])
                continue
            if label in self.ignored:
                continue
            end = frame + 1
            # flashlight places its silences where they cost nothing, maybe inside the run: the
            # emissions' run of the label decides, as in greedy decoding
            while end < len(argmax) and argmax[end] == label:
                end += 1
            groups[-1].append((label, frame, end))
        return [g for g in groups if g]

    def _word(self, text: str, span: list[tuple[int, int, int]]) -> Word:
        return Word(text, span[0][1] * self.frame_s, span[-1][2] * self.frame_s)

    def _lexicon_words(self, words: list[str], spans: list[list[tuple[int, int, int]]]) -> list[Word]:
        """Align the hypothesis' words with its labels (words may follow each other without a
        delimiter: the lexicon says where each ends)."""
        assert self.lexicon is not None
        flat = [item for span in spans for item in span]
        out: list[Word] = []
        pos = 0
        for word in words:
            for ids in sorted(self.lexicon.get(word, []), key=len, reverse=True):
                if tuple(label for label, _, _ in flat[pos : pos + len(ids)]) == ids:
                    out.append(self._word(word, flat[pos : pos + len(ids)]))
                    pos += len(ids)
                    break
            else:  # cannot happen with a lexicon decoder; keep the word, without a time of its own
                at = flat[min(pos, len(flat) - 1)] if flat else (0, 0, 0)
                out.append(Word(word, at[1] * self.frame_s, at[2] * self.frame_s))
        return out


def _token_names(labels: Sequence[str], blank: int, delimiter: int) -> list[str]:
    """A unique whitespace-free name per label: the label itself where it is one."""
    names: list[str] = []
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if i == blank:
            name = label if _plain(label) and label not in labels[:i] else _BLANK
        elif i == delimiter:
            name = label if _plain(label) else "|"
        else:
            name = label if _plain(label) else f"<label{i}>"
        if name in seen or name in (_BLANK, _SILENCE) and i not in (blank, delimiter):
            name = f"<label{i}>"
        seen.add(name)
        names.append(name)
    if len(set(names)) != len(names):  # "|" taken by another label: rename the delimiter
        names[delimiter] = _unused(names, _SILENCE)
    return names


def _plain(label: str) -> bool:
    return bool(label) and not any(c.isspace() for c in label)


def _unused(names: Sequence[str], wanted: str) -> str:
    name = wanted
    while name in names:
        name = f"<{name}>"
    return name

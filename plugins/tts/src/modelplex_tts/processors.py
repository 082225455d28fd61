"""Text processors: a normalised sentence into a Tacotron 2 model's input symbols.

- ``characters``: torchaudio's English character processor (the ``TACOTRON2_*_CHAR_*``
  bundles' 38 symbols). It lowercases and silently drops what is not in its set, so the
  text is normalised against that set first and what it lacks is counted as dropped.
- ``nvidia``: DeepLearningExamples' symbol table (148 symbols: pad, "-", punctuation,
  letters, then ARPAbet, which plain text never uses), after lowercasing as its
  ``english_cleaners`` do.
- ``phonemes``: torchaudio's phoneme processor (``TACOTRON2_*_PHONE_*``), which runs
  DeepPhonemizer's ``en_us_cmudict_forward`` model; it loads only where the ``dp`` package
  is installed and that checkpoint is in the torch hub cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelplex import ModelLoadError, WeightsNotFoundError
from modelplex.tasks.speech_synthesis import PreparedText
from modelplex_tts.normalize import normalize

__all__ = ["PHONEMIZER_URL", "TextProcessor", "text_processor"]

PHONEMIZER_URL = "https://public-asai-dl-models.s3.eu-central-1.amazonaws.com/DeepPhonemizer/en_us_cmudict_forward.pt"

# DeepLearningExamples' tacotron2/text/symbols.py, less the ARPAbet symbols that follow.
_NVIDIA_SYMBOLS = ["_", "-", *"!'(),.:;? ", *"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"]
NVIDIA_N_SYMBOLS = 148


@dataclass(frozen=True)
class TextProcessor:
    """Normalises a sentence for a symbol set and encodes it."""

    name: str
    n_symbols: int
    voiced: Callable[[str], bool]
    """Whether a character of normalised text is voiced by the model."""
    encode: Callable[[str], list[int]]

    def prepare(self, text: str) -> PreparedText:
        """Normalise and encode one sentence (thread-safe: reads only immutable tables)."""
        norm = normalize(text, self.voiced)
        tokens = self.encode(norm.text) if any(c != " " for c in norm.text) else []
        return PreparedText(tokens, norm.text, norm.normalized, norm.dropped, norm.dropped_chars)


def _characters() -> TextProcessor:
    from torchaudio.pipelines import TACOTRON2_GRIFFINLIM_CHAR_LJSPEECH

    processor = TACOTRON2_GRIFFINLIM_CHAR_LJSPEECH.get_text_processor()
    symbols = set(processor.tokens)

    def encode(text: str) -> list[int]:
        ids, _ = processor(text)
        return [int(i) for i in ids[0]]

    return TextProcessor("characters", len(processor.tokens), lambda c: c.lower() in symbols, encode)


def _nvidia() -> TextProcessor:
    ids = {s: i for i, s in enumerate(_NVIDIA_SYMBOLS)}
    lower = {c for c in ids if not c.isupper()}
    return TextProcessor(
        "nvidia", NVIDIA_N_SYMBOLS, lambda c: c.lower() in lower, lambda text: [ids[c] for c in text.lower()]
    )


def _phonemes(allow_download: bool) -> TextProcessor:
    import torch

    try:
        import dp  # noqa: F401 - DeepPhonemizer, which torchaudio's phoneme processor runs
    except ImportError:
        raise ModelLoadError("the phoneme text processor needs DeepPhonemizer: pip install deep-phonemizer") from None
    path = os.path.join(torch.hub.get_dir(), "checkpoints", "en_us_cmudict_forward.pt")
    if not os.path.exists(path) and not allow_download:
        raise WeightsNotFoundError(
            f"DeepPhonemizer's checkpoint is not in the torch hub cache: {path}; download {PHONEMIZER_URL} "
            "there, or allow downloads (allow_download = true)"
        )
    from torchaudio.pipelines import TACOTRON2_GRIFFINLIM_PHONE_LJSPEECH

    processor: Any = TACOTRON2_GRIFFINLIM_PHONE_LJSPEECH.get_text_processor()
    letters = set("abcdefghijklmnopqrstuvwxyz!'(),.:;? -")

    def encode(text: str) -> list[int]:
        ids, _ = processor(text)
        return [int(i) for i in ids[0]]

    return TextProcessor("phonemes", len(processor.tokens), lambda c: c.lower() in letters, encode)


def text_processor(name: str, n_symbols: int, *, allow_download: bool = False) -> TextProcessor:
    """The processor called ``name`` (``"auto"`` picks by the model's symbol count: 38
    characters, 148 NVIDIA, 96 phonemes); ModelLoadError when it does not fit the model."""
    if name == "auto":
        name = {38: "characters", NVIDIA_N_SYMBOLS: "nvidia", 96: "phonemes"}.get(n_symbols, "")
        if not name:
            raise ModelLoadError(
                f"a Tacotron 2 with {n_symbols} input symbols fits none of the text processors "
                "(characters: 38, phonemes: 96, nvidia: 148); set settings.text_processor"
            )
    if name == "characters":
        processor = _characters()
    elif name == "nvidia":
        processor = _nvidia()
    elif name == "phonemes":
        processor = _phonemes(allow_download)
    else:
        raise ModelLoadError(f"unknown text processor {name!r}")
    if processor.n_symbols > n_symbols:
        raise ModelLoadError(
            f"the {name} text processor has {processor.n_symbols} symbols; the model embeds only {n_symbols}"
        )
    return processor

"""Tiny speech recognizers with random weights, saved in their real formats once per test
process, and in-process references that decode without the server."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_DIRS: dict[str, Path] = {}


def speech_dirs() -> dict[str, Path]:
    """``w2v``: a tiny Hugging Face Wav2Vec2ForCTC folder saved with its processor."""
    if not _DIRS:
        import atexit
        import shutil
        import tempfile

        from modelplex_speech.demo import save_tiny_wav2vec2

        root = Path(tempfile.mkdtemp(prefix="modelplex-speech-"))
        atexit.register(shutil.rmtree, root, True)
        _DIRS["root"] = root
        _DIRS["w2v"] = save_tiny_wav2vec2(root / "w2v", seed=3)
    return _DIRS


def w2v_model(name: str = "w2v", **fields: object) -> dict[str, object]:
    """A [[models]] entry serving the tiny Wav2Vec 2.0 folder through the hf-wav2vec2 spec."""
    return {"spec": "hf-wav2vec2", "name": name, "weights": str(speech_dirs()["w2v"]), "devices": ["cpu"], **fields}


_HF: dict[str, object] = {}


def hf_decode(samples: np.ndarray, device: str = "cpu") -> str:
    """The offline greedy decode of one segment with transformers alone: the processor's
    features, the model's logits (on ``device``), argmax, the tokenizer's own CTC decoding."""
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    if device not in _HF:
        path = speech_dirs()["w2v"]
        _HF["processor"] = Wav2Vec2Processor.from_pretrained(path)
        _HF[device] = Wav2Vec2ForCTC.from_pretrained(path).eval().to(device)
    processor, model = _HF["processor"], _HF[device]
    inputs = processor(samples, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        ids = model(inputs["input_values"].to(device)).logits[0].argmax(-1).cpu()
    # The tokenizer's CTC decoding (groups repeats, drops the pad token, "|" becomes a space);
    # special tokens other than the pad come out as text, which no transcript holds.
    text = processor.decode(ids)
    for special in ("<s>", "</s>", "<unk>"):
        text = text.replace(special, "")
    return " ".join(text.split())  # whitespace as the server joins words

"""``tiny-wav2vec2``: a 2-layer Wav2Vec2ForCTC with random weights and a real character vocabulary,
built on the spot so that the demo profile serves speech recognition anywhere, with no hub.

The model and its processor are saved as a Hugging Face folder in a temporary directory and
loaded from there through the same ``from_pretrained`` code as any other model. The API
reports its weights as RANDOM: its transcripts are meaningless.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelplex import LoadContext, ModelLoadError, WeightsChoice, WeightsSource

__all__ = ["VOCAB", "demo_recognizer", "save_tiny_wav2vec2"]

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]
"""facebook/wav2vec2-base-960h's vocabulary, in its order."""

_LOCK = threading.Lock()
_FOLDER: Path | None = None


def save_tiny_wav2vec2(path: Path, *, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Save a tiny random ``Wav2Vec2ForCTC`` and its ``Wav2Vec2Processor`` to ``path``."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.json"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file),
        unk_token="<unk>",
        pad_token="<pad>",
        word_delimiter_token="|",
        bos_token="<s>",
        eos_token="</s>",
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
    config = Wav2Vec2Config(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        pad_token_id=0,
        ctc_loss_reduction="mean",
    )
    torch.manual_seed(seed)
    Wav2Vec2ForCTC(config).eval().save_pretrained(path)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return path


def _folder() -> Path:
    global _FOLDER
    with _LOCK:
        if _FOLDER is None or not (_FOLDER / "config.json").is_file():
            path = Path(tempfile.mkdtemp(prefix="modelplex-tiny-wav2vec2-"))
            atexit.register(shutil.rmtree, path, ignore_errors=True)
            _FOLDER = save_tiny_wav2vec2(path)
        return _FOLDER


def demo_recognizer(ctx: LoadContext[Any]) -> Any:
    """The factory of ``tiny-wav2vec2``: weights must be "random"."""
    from modelplex_speech.hf import HFWav2Vec2

    if ctx.weights.source is not WeightsSource.RANDOM:
        raise ModelLoadError('tiny-wav2vec2 has no trained weights: use weights = "random" (it is a demo model)')
    return HFWav2Vec2(replace(ctx, weights=WeightsChoice(WeightsSource.CHECKPOINT, path=_folder())))

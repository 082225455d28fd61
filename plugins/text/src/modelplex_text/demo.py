"""``tiny-gpt2``: a 2-layer GPT-2 with random weights and a byte-level tokenizer built on the
spot, so that the demo profile serves text generation anywhere, with no model hub.

The model is built with random weights (seeded), saved as a Hugging Face folder in a
temporary directory, and loaded from there through the same ``from_pretrained`` code as
any other model. The API reports its weights as RANDOM: its text is meaningless.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from modelplex import LoadContext, ModelLoadError, WeightsChoice, WeightsSource

__all__ = ["demo_generator"]

_LOCK = threading.Lock()
_FOLDER: Path | None = None


def _build(path: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    # Every byte is a token (no merges to train): any text round-trips.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)} | {"<|endoftext|>": len(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    eos = vocab["<|endoftext|>"]
    config = GPT2Config(
        vocab_size=len(vocab), n_positions=512, n_embd=64, n_layer=2, n_head=2, bos_token_id=eos, eos_token_id=eos
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _folder() -> Path:
    global _FOLDER
    with _LOCK:
        if _FOLDER is None or not (_FOLDER / "config.json").is_file():
            path = Path(tempfile.mkdtemp(prefix="modelplex-tiny-gpt2-"))
            import atexit

            atexit.register(shutil.rmtree, path, ignore_errors=True)
            _FOLDER = _build(path)
        return _FOLDER


def demo_generator(family: Any, ctx: LoadContext[Any]) -> Any:
    """The factory of ``tiny-gpt2``: weights must be "random"."""
    from dataclasses import replace

    from modelplex_text.generator import HFTextGenerator

    if ctx.weights.source is not WeightsSource.RANDOM:
        raise ModelLoadError('tiny-gpt2 has no trained weights: use weights = "random" (it is a demo model)')
    local = replace(ctx, weights=WeightsChoice(WeightsSource.CHECKPOINT, path=_folder()))
    return HFTextGenerator(family, local)

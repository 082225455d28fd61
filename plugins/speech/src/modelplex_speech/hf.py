"""Hugging Face ``Wav2Vec2ForCTC`` with its processor (feature extractor and CTC tokenizer),
from a folder saved with ``save_pretrained`` or a hub id in the local cache.

Every check is on the local disk first, so a missing model fails at once with a message
that says what to do, instead of after network timeouts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from modelplex import LoadContext, ModelLoadError, WeightsNotFoundError, WeightsSource
from modelplex_speech.torch_ctc import TorchCTC

__all__ = ["HFWav2Vec2", "resolve_hf"]

_TRUE = {"1", "on", "yes", "true"}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_hf(ctx: LoadContext[Any], hub_id: str | None) -> tuple[str, bool]:
    """What to hand ``from_pretrained``, and whether to stay off the network."""
    choice = ctx.weights
    if choice.source is WeightsSource.CHECKPOINT:
        assert choice.path is not None
        folder = Path(choice.path)
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise WeightsNotFoundError(
                f"weights {folder} is not a folder saved with save_pretrained (config.json, the weights, "
                "preprocessor_config.json and vocab.json): save the model with model.save_pretrained(path) "
                "and its Wav2Vec2Processor with processor.save_pretrained(path)"
            )
        return str(folder), True
    wanted = choice.id or hub_id
    if not wanted:
        raise WeightsNotFoundError(
            f"model {ctx.model_name!r}: give weights as a local folder saved with save_pretrained, or a hub id "
            '(weights = "org/model" or settings.hub_id)'
        )
    if _offline() or not choice.allow_download:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        if not isinstance(try_to_load_from_cache(wanted, "config.json"), str):
            why = "HF_HUB_OFFLINE is set" if _offline() else "downloads are off (server.allow_download = false)"
            raise WeightsNotFoundError(
                f"model {ctx.model_name!r}: {wanted} is not in the local Hugging Face cache ({HF_HUB_CACHE}) and "
                f"{why}. Run `hf download {wanted}` on a machine with network access and copy the cache here "
                "(or set HF_HOME to it), set weights to a local folder saved with save_pretrained, or allow "
                "downloads."
            )
        return wanted, True
    return wanted, False


class HFWav2Vec2(TorchCTC):
    """A ``Wav2Vec2ForCTC`` and its ``Wav2Vec2Processor``: the processor's feature extractor
    prepares each input (zero mean, unit variance where its config says so), the model's
    logits are the emissions, the tokenizer's vocabulary the labels (its pad token is the
    CTC blank, its word delimiter ``|``)."""

    def __init__(self, ctx: LoadContext[Any], hub_id: str | None = None) -> None:
        super().__init__(ctx)
        self.hub_id = getattr(ctx.settings, "hub_id", None) or hub_id
        self.processor: Any = None

    def build(self) -> Any:
        import torch
        from transformers import AutoConfig, Wav2Vec2ForCTC, Wav2Vec2Processor

        source, local = resolve_hf(self.ctx, self.hub_id)
        try:
            self.processor = Wav2Vec2Processor.from_pretrained(source, local_files_only=local)
            if self.ctx.weights.source is WeightsSource.RANDOM:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    model = Wav2Vec2ForCTC(AutoConfig.from_pretrained(source, local_files_only=local))
            else:
                model = Wav2Vec2ForCTC.from_pretrained(source, local_files_only=local)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load a Wav2Vec2ForCTC with its processor from {source}: {e}") from e
        tok = self.processor.tokenizer
        fe = self.processor.feature_extractor
        size = int(model.config.vocab_size or len(tok))
        labels = [""] * size
        for token, index in tok.get_vocab().items():
            if 0 <= index < size:
                labels[index] = token
        self.labels = tuple(labels)
        blank = tok.pad_token_id if tok.pad_token_id is not None else model.config.pad_token_id
        self.blank = int(blank or 0)
        self.word_delimiter = tok.word_delimiter_token or "|"
        delimiter = tok.convert_tokens_to_ids(self.word_delimiter)
        # <s>, </s>, <unk>: never text (transformers 5 counts the delimiter as special too).
        self.ignored_labels = frozenset(
            i for i in tok.all_special_ids if i not in (self.blank, delimiter) and 0 <= i < size
        )
        self.sample_rate = int(fe.sampling_rate or 16000)
        self.samples_per_frame = math.prod(model.config.conv_stride)
        return model

    def forward(self, batch: Any) -> Any:
        import torch

        fe = self.processor.feature_extractor
        # The processor's own preprocessing (numpy, per input), as offline use runs it.
        inputs = fe(list(batch.cpu().numpy()), sampling_rate=self.sample_rate, return_tensors="pt")
        values = inputs["input_values"].to(batch.device, torch.float32)
        return self.module(values).logits

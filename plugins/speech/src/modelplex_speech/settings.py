"""The settings of the speech specs (the ``settings`` table of a model's config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BundleSettings", "DeepSpeechSettings", "HFSettings"]


_PREPACK_DOC = """On a CPU, run the model's large linear layers through oneDNN with their weights
reordered once at load (``modelplex.kit.prepack_linears``): a base-size Wav2Vec 2.0 pass over
a 1.75 s window took 0.86x the time (its convolutional front end is most of the rest;
benchmarks/bench_prepack.py). Only the order of float32 sums changes. Off: PyTorch's own."""


class BundleSettings(BaseModel):
    """Settings of the torchaudio pipeline specs (``wav2vec2-base-960h``, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    cpu_prepack: bool = Field(default=True, description=_PREPACK_DOC)


class HFSettings(BaseModel):
    """Settings of ``hf-wav2vec2``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    cpu_prepack: bool = Field(default=True, description=_PREPACK_DOC)

    hub_id: str | None = Field(default=None, min_length=1)
    """The Hugging Face model id to load when weights are "pretrained" or "random"; overrides the
    variant's id (a local folder in ``weights`` needs none)."""


class DeepSpeechSettings(BaseModel):
    """Settings of ``deepspeech`` and ``deepspeech2``: the size of a model with random weights
    (a checkpoint brings its own)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    cpu_prepack: bool = Field(default=True, description=_PREPACK_DOC)
    hidden_size: int = Field(default=512, ge=8, le=8192)
    """Hidden units per layer (random weights only)."""
    hidden_layers: int = Field(default=3, ge=1, le=12)
    """Recurrent layers (``deepspeech2`` with random weights only)."""

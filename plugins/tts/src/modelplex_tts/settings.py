"""The settings of the Tacotron 2 specs (the ``settings`` table of a ``[[models]]`` entry)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelplex.specs import ServerPath

__all__ = ["TTSSettings"]


class TTSSettings(BaseModel):
    """How a Tacotron 2 pairing decodes and vocodes."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    text_processor: Literal["auto", "characters", "nvidia", "phonemes"] = "auto"
    """How text becomes symbols; auto picks by the model's symbol count (38 characters,
    148 NVIDIA, 96 phonemes)."""
    vocoder_weights: Annotated[str | None, ServerPath()] = None
    """The vocoder's checkpoint file (WaveGlow: DeepLearningExamples' format; WaveRNN: a
    torchaudio state dict), when ``weights`` is a Tacotron 2 checkpoint. Unset: the
    vocoder's weights follow ``weights`` (pretrained from the torch hub cache, or random)."""
    gate_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    """A sentence ends when the stop gate's probability passes this (1 never: only
    ``max_decoder_steps`` ends it, as a model with random weights needs)."""
    max_decoder_steps: int = Field(default=1000, ge=1, le=20_000)
    """The most mel frames one sentence may take (1000 frames is 11.6 s at 22 050 Hz)."""
    max_frames_per_char: float = Field(default=0.0, ge=0.0, le=100.0)
    """When > 0, also caps a sentence at this many frames per input symbol."""
    frames_per_step: int = Field(default=10, ge=1, le=1000)
    """Decoder frames per step of the server's scheduler: a cancelled call stops within
    this many frames, and calls join a running batch between steps."""
    piece_frames: int = Field(default=80, ge=0, le=20_000)
    """Frames per vocoded piece of a long sentence, so that its audio starts before it is
    fully decoded; 0 vocodes each sentence whole."""
    batch_invariant: bool | None = None
    """Pad every decoder batch to the model's ``max_batch_size`` rows, so that a sentence's
    audio is bit-identical whether it shared its steps with others or not. None: on for CUDA,
    where the padding costs nothing measurable, off on a CPU, where it doubles the cost of a
    lone sentence's frames (measured, docs/speech-synthesis.md). Off, a sentence batched with
    others differs from itself alone by float rounding in the mel, which Griffin-Lim amplifies
    into audible (though equally valid) differences."""
    cpu_prepack: bool = True
    """On a CPU, run the large linear layers and the decoder's LSTM cells through oneDNN with
    their weights reordered once at load (``modelplex.kit.prepack_linears``): a full-size
    Tacotron 2 decoder frame takes 0.49x the time for 1 sentence and 0.28x for 4 (2 threads),
    the Griffin-Lim pairing's real-time factor went from 0.53 to 0.47 (1 thread;
    docs/speech-synthesis.md). Only the order of float32 sums changes. Off: PyTorch's own."""
    seed: int = Field(default=0, ge=0)
    """Seeds each sentence's generator (pre-net dropout, vocoder noise): the same text and
    settings give the same audio."""
    griffin_lim_iterations: int = Field(default=32, ge=1, le=1000)
    """Griffin-Lim iterations per piece."""
    sigma: float = Field(default=0.666, ge=0.0, le=2.0)
    """WaveGlow's sampling temperature (DeepLearningExamples' inference default)."""
    denoiser_strength: float = Field(default=0.01, ge=0.0, le=1.0)
    """WaveGlow's denoiser: how much of the model's bias spectrum is subtracted (0 is off)."""
    random_size: Literal["full", "tiny"] = "full"
    """With ``weights = "random"``: the published architectures, or tiny ones (demo)."""

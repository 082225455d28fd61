"""A CTC recognizer over a PyTorch module: device placement, batching, unloading.

A model family subclasses :class:`TorchCTC` and implements :meth:`TorchCTC.build` (load the
module and set the labels, rate and frame hop) and :meth:`TorchCTC.forward` (a (B, N) batch
of samples to (B, frames, labels) scores).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from modelplex import LoadContext
from modelplex.kit import prepack_linears
from modelplex.tasks.base import TorchModule
from modelplex.tasks.speech_recognition import CTCRecognizer

__all__ = ["TorchCTC"]


class TorchCTC(TorchModule, CTCRecognizer):
    """The shared part of every CTC model of this plugin."""

    def __init__(self, ctx: LoadContext[Any]) -> None:
        self.ctx = ctx
        self.module: Any = None
        self.languages = tuple(getattr(ctx.variant.meta, "languages", ()) or ())

    @abstractmethod
    def build(self) -> Any:
        """On the instance's thread: the module (on the CPU, in eval mode), after setting
        ``labels``, ``blank``, ``word_delimiter``, ``sample_rate`` and ``samples_per_frame``."""

    @abstractmethod
    def forward(self, batch: Any) -> Any:
        """(B, N) float32 samples on the device to (B, frames, len(labels)) scores."""

    def load(self) -> None:
        import torch

        module = self.build()
        self.module = module.to(torch.device(self.ctx.device)).eval()
        if getattr(self.ctx.settings, "cpu_prepack", False) and self.ctx.device == "cpu":
            # Checked on a quarter second of a tone: a model whose code reads a layer's weight
            # data runs unpacked instead of failing.
            tone = torch.sin(torch.arange(self.sample_rate // 4) * 0.05)[None]
            rows = int(getattr(self.ctx.task_settings, "max_batch_size", 1))
            prepack_linears(self.module, rows=rows, check=lambda: self.forward(tone))

    def emissions(self, audio: Sequence[Any]) -> list[Any]:
        import torch

        with torch.inference_mode():
            batch = torch.stack([a.float() for a in audio]).to(self.ctx.device)
            scores = self.forward(batch)
        return list(scores.float().cpu())

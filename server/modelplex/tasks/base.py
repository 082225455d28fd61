"""The base of every task interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

__all__ = ["TaskModel", "TorchModule"]


class TaskModel(ABC):
    """What every task's interface shares: explicit load, warm-up and unload."""

    @abstractmethod
    def load(self) -> None:
        """Load the weights onto the instance's device. Raise ModelLoadError (or
        WeightsNotFoundError) with a message that says what to do."""

    def warmup(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Run one dummy inference so the first request is not slow. Optional."""

    @abstractmethod
    def unload(self) -> None:
        """Free what ``load`` took: drop the module, empty the device's cache."""

    def memory_bytes(self) -> int:
        """Bytes of parameters and buffers this instance holds on its device."""
        return 0


class TorchModule:
    """``unload`` and ``memory_bytes`` for a task model whose weights are one ``torch.nn.Module``
    in ``self.module``, on the device of ``self.ctx`` (its :class:`~modelplex.specs.LoadContext`).
    Put it before the task's interface in the bases: ``class M(TorchModule, ImageGenerator)``."""

    module: Any = None
    ctx: Any

    def unload(self) -> None:
        """Drop the module, and empty the CUDA cache on a CUDA device."""
        self.module = None
        if str(self.ctx.device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def memory_bytes(self) -> int:
        """Bytes of the module's parameters and buffers (0 before load and after unload)."""
        return 0 if self.module is None else module_bytes(self.module)


def module_bytes(module: Any) -> int:
    """Bytes of a ``torch.nn.Module``'s parameters and buffers (each shared tensor once): what
    its weights take, packed ones (``modelplex.kit.prepack_linears``) included."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))

"""The base of every task interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["TaskModel"]


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

"""The base of every task runtime."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from modelplex.errors import InferenceError
from modelplex.server.config import ModelConfig
from modelplex.server.instance import Instance

log = logging.getLogger(__name__)

__all__ = ["TaskRuntime", "inference_error"]


class TaskRuntime:
    """Owns how a model's requests are scheduled onto its instances."""

    def __init__(self, name: str, config: ModelConfig, instances: Sequence[Instance]) -> None:
        self.name = name
        self.config = config
        self.instances = list(instances)

    @property
    def max_batch_size(self) -> int:
        return 1

    def start(self) -> None:
        """Called on the event loop once every instance is loaded."""

    async def stop(self) -> None:
        """Stop taking work; called before the instances are closed."""

    def least_busy(self) -> Instance:
        """The instance with the fewest requests running (the first on ties)."""
        return min(self.instances, key=lambda i: i.busy)


def inference_error(model: str, exc: BaseException) -> InferenceError:
    """The INTERNAL error a client sees when a plugin raised an unexpected exception."""
    log.error("model %r failed during inference", model, exc_info=exc)
    return InferenceError(f"model {model!r} failed during inference: {type(exc).__name__}: {exc}")

"""The base of every task runtime: how a loaded model's requests reach its instances."""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from pydantic import BaseModel

from modelplex.errors import InferenceError
from modelplex.server.instance import Instance

log = logging.getLogger(__name__)

__all__ = ["Distribution", "RuntimeStats", "TaskRuntime", "inference_error"]

S = TypeVar("S", bound=BaseModel)


class Distribution:
    """Counts of observations in fixed buckets (cheap to update from any thread)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.bounds, value)] += 1
            self.total += value

    def count_and_mean(self) -> tuple[int, float]:
        with self._lock:
            count = sum(self.counts)
            return count, (self.total / count if count else 0.0)

    def buckets(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs and the sum, as Prometheus wants them."""
        with self._lock:
            counts, total = list(self.counts), self.total
        out: list[tuple[str, float]] = []
        running = 0.0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts, strict=True):
            running += count
            out.append((bound, running))
        return out, total


class RuntimeStats:
    """What a runtime counts for the metrics: batches, queue waits, outputs."""

    def __init__(self, output_unit: str = "responses") -> None:
        self.output_unit = output_unit
        self.outputs = 0
        self.batch_sizes = Distribution((1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queue_waits = Distribution((0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30))


class TaskRuntime(Generic[S]):
    """Owns how one loaded model's requests are scheduled onto its instances.

    Built by the registry once every instance has loaded, with the model's validated
    task settings; ``start()`` then runs on the event loop, and ``stop()`` when the model
    is unloaded, before its instances are closed.
    """

    def __init__(self, name: str, instances: Sequence[Instance], settings: S) -> None:
        self.name = name
        self.instances = list(instances)
        self.settings = settings
        self.stats = RuntimeStats(self.output_unit)

    output_unit = "responses"
    """What :attr:`RuntimeStats.outputs` counts (``"tokens"``, ``"images"``...)."""

    @property
    def max_batch_size(self) -> int:
        """The largest batch one forward pass (or decode step) takes; reported in ModelInfo."""
        return int(getattr(self.settings, "max_batch_size", 1))

    def info(self) -> Message | None:
        """What the task adds to ModelInfo (packed into ``task_info``); None for nothing."""
        return None

    def active(self) -> int:
        """Requests or sessions queued or running on this model now (0 when idle)."""
        return sum(i.busy for i in self.instances)

    def start(self) -> None:
        """Called on the event loop once every instance is loaded."""

    async def stop(self) -> None:
        """Stop taking work; called before the instances are closed."""

    def first_model(self) -> Any:
        """The task object of the first instance (every instance serves the same model)."""
        return self.instances[0].model


def inference_error(model: str, exc: BaseException) -> InferenceError:
    """The INTERNAL error a client sees when a plugin raised an unexpected exception."""
    log.error("model %r failed during inference", model, exc_info=exc)
    return InferenceError(f"model {model!r} failed during inference: {type(exc).__name__}: {exc}")

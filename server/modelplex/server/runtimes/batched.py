"""A dynamic-batching runtime, generic over the job and its result.

Requests are queued on a bounded :class:`~modelplex.server.batching.BatchQueue`;
each instance's own thread takes a batch whenever it is free, runs it through
:meth:`BatchingRuntime.run_batch`, and hands every caller its result in one call
to the loop. Cancelled and expired work is dropped unrun. Classification and
image generation are built on it; a third-party task that batches subclasses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from modelplex.errors import ModelNotReadyError, ModelplexError
from modelplex.server.batching import BatchQueue, Pending, resolve
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import TaskRuntime, inference_error
from modelplex.server.tracing import annotate

log = logging.getLogger(__name__)

__all__ = ["BatchingRuntime", "BatchingSettings"]

J = TypeVar("J")
R = TypeVar("R")
BS = TypeVar("BS", bound="BatchingSettings")


class BatchingSettings(BaseModel):
    """The serving settings every batched task shares; a task's settings model extends it."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_batch_size: int = Field(default=8, ge=1, le=1024)
    """Largest batch one forward pass takes, in batch slots; 1 turns dynamic batching off."""
    max_batch_delay_ms: float = Field(default=0.0, ge=0, le=10_000)
    """How long a free instance waits for a batch to fill once it has a request. 0 takes what is
    queued when the instance is free, which adds no latency to a lone request."""
    max_queue_size: int = Field(default=256, ge=1, le=1_000_000)
    """Requests waiting per model before new ones get RESOURCE_EXHAUSTED."""


class BatchingRuntime(TaskRuntime[BS], Generic[BS, J, R]):
    """Queues jobs; each instance's thread takes a batch of them when free.

    Subclasses implement :meth:`run_batch` (on the instance's thread) and call
    :meth:`submit` from their request methods (on the event loop).
    """

    def __init__(self, name: str, instances: Sequence[Instance], settings: BS) -> None:
        super().__init__(name, instances, settings)
        self._queue: BatchQueue[J] = BatchQueue(
            name, settings.max_queue_size, settings.max_batch_size, settings.max_batch_delay_ms / 1000.0
        )
        self._workers: list[asyncio.Future[None]] = []

    @property
    def queued(self) -> int:
        """Requests waiting for an instance."""
        return len(self._queue)

    def active(self) -> int:
        return self.queued + sum(i.busy for i in self.instances)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Each instance's thread runs its batch loop until stop(); load and unload run on the
        # same thread before and after, so the model is never called from two threads.
        self._workers = [inst.start_loop(self._serve, inst, loop) for inst in self.instances]

    async def stop(self) -> None:
        """Stop taking batches; batches already running finish and answer their callers."""
        left = self._queue.close()
        unloaded = ModelNotReadyError(f"model {self.name!r} was unloaded")
        resolve(left, [unloaded] * len(left))
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    def enqueue(self, job: J, size: int = 1, deadline: float | None = None) -> asyncio.Future[R]:
        """Queue ``job`` (taking ``size`` batch slots) and return its future at once, so a task
        can queue several jobs before it awaits any. Raises QueueFullError at once when the
        queue is full. Cancel the future to drop a job that has not started; a job still queued
        when ``deadline`` (loop time) passes fails with DeadlineExceededError unrun."""
        return self._put(job, size, deadline).future

    async def submit(self, job: J, size: int = 1, deadline: float | None = None) -> R:
        """Queue ``job`` and wait for its result (see :meth:`enqueue`); the job is dropped
        unrun if the caller goes away while it waits."""
        pending = self._put(job, size, deadline)
        try:
            return await pending.future
        except asyncio.CancelledError:
            pending.future.cancel()  # the worker skips it if it has not started
            raise
        finally:
            annotate(batch_size=pending.batch_size, queue_wait_ms=round(pending.waited * 1000, 3))

    def _put(self, job: J, size: int, deadline: float | None) -> Pending[J]:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        pending = Pending(job, size, future, deadline)
        self._queue.put(pending)
        return pending

    @abstractmethod
    def run_batch(self, model: Any, jobs: Sequence[J]) -> Sequence[R | BaseException]:
        """On the instance's thread: run ``jobs`` together; one result (or the exception that
        failed that job alone) per job, in order. Raising fails every job of the batch: a
        ModelplexError with its own status, anything else as INTERNAL."""

    def _serve(self, inst: Instance, loop: asyncio.AbstractEventLoop) -> None:
        """On the instance's thread: take a batch, run it, hand the results to the loop; repeat."""
        model = inst.model
        while (batch := self._queue.take(loop)) is not None:
            results: Sequence[Any]
            now = time.monotonic()
            slots = sum(p.size for p in batch)
            for pending in batch:
                pending.waited, pending.batch_size = now - pending.queued_at, slots
                self.stats.queue_waits.observe(pending.waited)
            self.stats.batch_sizes.observe(slots)
            inst.busy += 1
            try:
                results = self.run_batch(model, [p.payload for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} jobs")
            except ModelplexError as e:  # the task refused the whole batch on purpose
                results = [e] * len(batch)
            except BaseException as e:  # the whole batch failed inside the plugin; keep serving
                results = [inference_error(self.name, e)] * len(batch)
            finally:
                inst.busy -= 1
            inst.completed += 1
            self.stats.outputs += sum(
                p.size for p, r in zip(batch, results, strict=True) if not isinstance(r, BaseException)
            )
            loop.call_soon_threadsafe(resolve, batch, results)

"""A bounded queue that the instances' threads take batches from.

Each loaded model of a batchable task has one queue. The event loop puts
requests in; each instance's worker thread takes a batch whenever it is free,
runs it, and hands the results back to the loop in one call. With no batch
delay a free worker takes what is queued at that moment, so a lone request
waits for nothing, and requests that arrive while every instance is busy are
batched together. A delay makes a free worker wait (up to it) for a fuller batch.

The workers block on the queue themselves, rather than an asyncio task per
instance handing each batch to a thread pool: that removes an event-loop
round and a future chain from every request (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from modelplex.errors import DeadlineExceededError, ModelNotReadyError, QueueFullError

__all__ = ["BatchQueue", "Pending", "resolve"]

P = TypeVar("P")


@dataclass(eq=False, slots=True)
class Pending(Generic[P]):
    """One queued request: its payload, its size in batch slots, its result."""

    payload: P
    size: int
    future: asyncio.Future[Any]
    deadline: float | None = None
    """time.monotonic() (= loop.time()) after which the request is dropped unrun."""
    queued_at: float = field(default_factory=time.monotonic)
    waited: float = 0.0
    """Seconds it waited in the queue, set when a worker takes it."""
    batch_size: int = 0
    """Slots of the batch it ran in, set when a worker takes it."""


class BatchQueue(Generic[P]):
    """FIFO of :class:`Pending` requests with a bound on how many wait.

    ``put`` is called on the event loop; ``take`` on worker threads.
    """

    def __init__(self, name: str, max_queue_size: int, max_batch_size: int, max_batch_delay_s: float) -> None:
        self._name = name
        self._items: deque[Pending[P]] = deque()
        self._queued_size = 0
        self._max_queue = max_queue_size
        self._max_batch = max_batch_size
        self._delay = max_batch_delay_s
        self._cond = threading.Condition(threading.Lock())
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, pending: Pending[P]) -> None:
        """Queue a request, or raise QueueFullError at once when the queue is full."""
        with self._cond:
            if self._closed:
                raise ModelNotReadyError(f"model {self._name!r} is being unloaded")
            if len(self._items) >= self._max_queue:
                raise QueueFullError(
                    f"model {self._name!r} has {len(self._items)} requests queued (max_queue_size); retry later"
                )
            self._items.append(pending)
            self._queued_size += pending.size
            self._cond.notify()

    def take(self, loop: asyncio.AbstractEventLoop) -> list[Pending[P]] | None:
        """On a worker thread: block for work, then return up to max_batch_size slots of
        live requests; None once the queue is closed.

        Requests whose caller went away (future done) are dropped; those past their
        deadline are failed with DeadlineExceededError (on the loop) and dropped too.
        """
        with self._cond:
            while True:
                while not self._items and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return None
                if self._delay > 0 and self._queued_size < self._max_batch:
                    self._cond.wait_for(lambda: self._queued_size >= self._max_batch or self._closed, self._delay)
                    if self._closed:
                        return None
                batch, expired = self._pop_batch(time.monotonic())
                if expired:
                    loop.call_soon_threadsafe(_expire, expired)
                if batch:
                    return batch

    def _pop_batch(self, now: float) -> tuple[list[Pending[P]], list[Pending[P]]]:
        batch: list[Pending[P]] = []
        expired: list[Pending[P]] = []
        used = 0
        while self._items:
            head = self._items[0]
            # done() is read off the loop thread: at worst a request cancelled this very
            # moment still runs, and resolve() (on the loop) then leaves it alone.
            if head.future.done():
                self._drop()
                continue
            if head.deadline is not None and now > head.deadline:
                expired.append(self._drop())
                continue
            if batch and used + head.size > self._max_batch:
                break
            batch.append(self._drop())
            used += head.size
        return batch, expired

    def _drop(self) -> Pending[P]:
        item = self._items.popleft()
        self._queued_size -= item.size
        return item

    def close(self) -> list[Pending[P]]:
        """Wake every worker to stop (the batch each is running finishes); return what was queued."""
        with self._cond:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            self._queued_size = 0
            self._cond.notify_all()
        return left


def _expire(expired: Sequence[Pending[Any]]) -> None:
    for pending in expired:
        if not pending.future.done():
            pending.future.set_exception(DeadlineExceededError("the deadline passed while the request was queued"))


def resolve(batch: Sequence[Pending[P]], results: Sequence[Any]) -> None:
    """On the loop: hand each request its result; a result that is an exception is raised to its caller."""
    for pending, result in zip(batch, results, strict=True):
        if pending.future.done():
            continue
        if isinstance(result, BaseException):
            pending.future.set_exception(result)
        else:
            pending.future.set_result(result)

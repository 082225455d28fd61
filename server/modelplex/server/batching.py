"""A bounded queue that hands workers batches of requests.

Each loaded model of a batchable task has one queue; each of its instances
runs a worker that takes a batch whenever it is free. With no batch delay a
worker takes what is queued at that moment, so a lone request waits for
nothing and requests that arrive while every instance is busy are batched
together. A delay makes a free worker wait (up to it) for a fuller batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from modelplex.errors import DeadlineExceededError, QueueFullError

__all__ = ["BatchQueue", "Pending"]

P = TypeVar("P")


@dataclass(eq=False)
class Pending(Generic[P]):
    """One queued request: its payload, its size in batch slots, its result."""

    payload: P
    size: int
    future: asyncio.Future[Any]
    deadline: float | None = None
    """loop.time() after which the request is dropped unrun."""
    extra: dict[str, Any] = field(default_factory=dict)


class BatchQueue(Generic[P]):
    """FIFO of :class:`Pending` requests with a bound on how many wait."""

    def __init__(self, name: str, max_queue_size: int, max_batch_size: int, max_batch_delay_s: float) -> None:
        self._name = name
        self._items: deque[Pending[P]] = deque()
        self._queued_size = 0
        self._max_queue = max_queue_size
        self._max_batch = max_batch_size
        self._delay = max_batch_delay_s
        self._idle: deque[asyncio.Future[None]] = deque()
        self._filled: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, pending: Pending[P]) -> None:
        """Queue a request, or raise QueueFullError at once when the queue is full."""
        if len(self._items) >= self._max_queue:
            raise QueueFullError(
                f"model {self._name!r} has {len(self._items)} requests queued (max_queue_size); retry later"
            )
        self._items.append(pending)
        self._queued_size += pending.size
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        if self._filled is not None and self._queued_size >= self._max_batch and not self._filled.done():
            self._filled.set_result(None)

    async def take(self) -> list[Pending[P]]:
        """Wait for work, then return up to max_batch_size slots of live requests.

        Requests whose caller went away (future done) are dropped; those past
        their deadline get DeadlineExceededError and are dropped too.
        """
        loop = asyncio.get_running_loop()
        while True:
            while not self._items:
                waiter = loop.create_future()
                self._idle.append(waiter)
                await waiter
            if self._delay > 0 and self._queued_size < self._max_batch:
                self._filled = loop.create_future()
                try:
                    await asyncio.wait_for(asyncio.shield(self._filled), self._delay)
                except TimeoutError:
                    pass
                finally:
                    self._filled = None
            batch = self._pop_batch(loop.time())
            if batch:
                return batch

    def _pop_batch(self, now: float) -> list[Pending[P]]:
        batch: list[Pending[P]] = []
        used = 0
        while self._items:
            head = self._items[0]
            if head.future.done():
                self._drop()
                continue
            if head.deadline is not None and now > head.deadline:
                self._drop()
                head.future.set_exception(
                    DeadlineExceededError("the deadline passed while the request was queued")
                )
                continue
            if batch and used + head.size > self._max_batch:
                break
            batch.append(self._drop())
            used += head.size
        return batch

    def _drop(self) -> Pending[P]:
        item = self._items.popleft()
        self._queued_size -= item.size
        return item

    def fail_all(self, exc_factory: type[Exception], message: str) -> None:
        """Fail every queued request (at unload)."""
        while self._items:
            item = self._drop()
            if not item.future.done():
                item.future.set_exception(exc_factory(message))


def resolve(batch: Sequence[Pending[P]], results: Sequence[Any]) -> None:
    """Hand each request its result; a result that is an exception is raised to its caller."""
    for pending, result in zip(batch, results, strict=True):
        if pending.future.done():
            continue
        if isinstance(result, BaseException):
            pending.future.set_exception(result)
        else:
            pending.future.set_result(result)

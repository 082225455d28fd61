"""An output stream: the messages of one streaming call, from the runtime to the servicer.

The runtime puts messages (on the event loop); the servicer iterates them. The last
message is marked final and ends the iteration; an exception put in the stream is
raised to the reader and ends it too. ``cancel()`` (the client went away) stops the
producer: later puts are dropped, and the runtime sees ``cancelled`` at its next step.
Backpressure: when ``max_pending`` messages wait unread the stream is ``paused``, and
the producer should skip it until the reader catches up (``on_resume`` is called then).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

__all__ = ["OutputStream"]

T = TypeVar("T")

DEFAULT_MAX_PENDING = 64


class OutputStream(Generic[T]):
    """The messages of one call, as an async iterator (put on the event loop)."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._queue: asyncio.Queue[tuple[T | BaseException, bool]] = asyncio.Queue()
        self.cancelled = False
        self.done = False
        """Set once the final message (or an error) is decided; the producer sends nothing after."""
        self.on_resume: Callable[[], None] | None = None
        """Called when a paused stream's reader has caught up."""
        self.on_cancel: Callable[[], None] | None = None
        """Called once when the stream is cancelled (wake the producer)."""

    def put(self, item: T | BaseException, *, final: bool = False) -> None:
        """Queue a message (``final`` ends the stream) or an exception (raised to the reader,
        ending the stream). Dropped once the stream is cancelled."""
        if final or isinstance(item, BaseException):
            self.done = True
        if not self.cancelled:
            self._queue.put_nowait((item, final))

    def cancel(self) -> None:
        """The reader is gone: stop producing. A no-op once the stream is done."""
        if not self.done and not self.cancelled:
            self.cancelled = True
            if self.on_cancel is not None:
                self.on_cancel()

    @property
    def pending(self) -> int:
        """Messages put and not read yet."""
        return self._queue.qsize()

    @property
    def paused(self) -> bool:
        """Too many messages wait unread: the producer should skip this stream for now."""
        return self._queue.qsize() >= self.max_pending

    def __aiter__(self) -> AsyncIterator[T]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[T]:
        while True:
            item, final = await self._queue.get()
            if self.on_resume is not None and self._queue.qsize() == self.max_pending - 1:
                self.on_resume()  # it was paused: it may run again
            if isinstance(item, BaseException):
                raise item
            yield item
            if final:
                return

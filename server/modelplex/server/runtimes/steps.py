"""A step scheduler: sessions that advance step by step on a model's instances.

Token streams (one decode step per token) and live audio (one window per step) are
sessions: each lives on one instance, and the sessions of an instance advance
together, one step at a time, so that they share each forward pass. Each instance
has a *lane*: the sessions being prepared (their input checked off the loop),
waiting for a slot, joining, and running. A driver task per lane loops on the event
loop: it drops the sessions whose client went away or whose deadline passed, admits
waiting ones up to ``max_batch_size``, and runs one step of the lane on the
instance's thread. So sessions join and leave between steps and never wait for each
other to finish. A session whose reader falls behind (``paused``) sits steps out.

Stopping lets the step in flight finish, then ends every session it knows: those that
finished in that step keep their last message, the others get the runtime's
"cancelled" final message, and their resources are released on the instance's thread.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from modelplex.errors import DeadlineExceededError, ModelNotReadyError, ModelplexError
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import inference_error
from modelplex.server.runtimes.stream import DEFAULT_MAX_PENDING, OutputStream

log = logging.getLogger(__name__)

__all__ = ["Lane", "StepScheduler", "StepSession", "run_step", "step_error"]

T = TypeVar("T")
S = TypeVar("S", bound="StepSession[Any]")


class StepSession(OutputStream[T]):
    """One session's output stream, and where it runs. Subclasses add their own state
    (a KV cache, an audio buffer), owned by the instance's thread once admitted."""

    def __init__(self, deadline: float | None, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        super().__init__(max_pending)
        self.deadline = deadline
        """Loop time after which the session fails DEADLINE_EXCEEDED; None for none."""
        self.lane: Lane[Any] | None = None
        self.on_cancel = self._wake
        self.on_resume = self._wake

    def _wake(self) -> None:
        if self.lane is not None:
            self.lane.wake.set()

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


@dataclass
class Lane(Generic[S]):
    """The sessions of one instance."""

    instance: Instance
    preparing: set[S] = field(default_factory=set)
    """Submitted, their input being checked off the loop; they join ``waiting`` next."""
    running: list[S] = field(default_factory=list)
    waiting: collections.deque[S] = field(default_factory=collections.deque)
    joining: list[S] = field(default_factory=list)
    """Taken off ``waiting`` for the step in flight, which admits them."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def load(self) -> int:
        return len(self.preparing) + len(self.running) + len(self.waiting)


Event = tuple[S, Any]
StepFn = Callable[[Any, Sequence[S], Sequence[S], Sequence[S]], list[tuple[S, Any]]]
"""``(model, joining, running, leaving)`` on the instance's thread: release the leaving
sessions, admit the joining ones, advance all; return ``(session, message or exception)``
events. A session that ended in this step has ``done`` set: its message is its last."""
ReleaseFn = Callable[[Any, Sequence[S]], None]
"""``(model, sessions)`` on the instance's thread: free what the sessions hold; never raises."""
CancelledFn = Callable[[S], Any]
"""The final message of a session that the scheduler ends (stop): e.g. finish reason CANCELLED."""


def step_error(name: str, e: BaseException) -> BaseException:
    """A model step's failure as its sessions get it: a modelplex error as it is (its own
    status), anything else as INTERNAL naming the model."""
    return e if isinstance(e, ModelplexError) else inference_error(name, e)


def run_step(
    name: str,
    model: Any,
    batch: Sequence[S],
    call: Callable[[], Sequence[T]],
    *,
    release: ReleaseFn[S],
    events: list[tuple[S, Any]],
    what: str,
) -> Sequence[T] | None:
    """On the instance's thread: run ``call`` (one step of the model over ``batch``) and check
    that it gave one result per session. If it raised or miscounted, every session of the
    batch ends with the error (appended to ``events`` as its final message), is released, and
    the result is None; the others of the lane go on."""
    try:
        outputs = call()
        if len(outputs) != len(batch):
            raise RuntimeError(f"step returned {len(outputs)} results for {len(batch)} {what}")
    except Exception as e:
        err = step_error(name, e)
        for s in batch:
            s.done = True
            events.append((s, err))
        release(model, batch)
        return None
    return outputs


def _deliver(events: Sequence[tuple[StepSession[Any], Any, bool]]) -> None:
    """On the loop: events a step emitted before it ended, each with whether it was final."""
    for s, item, final in events:
        s.put(item, final=final)


class StepScheduler(Generic[S]):
    """Lanes of step sessions over a model's instances, and their driver loops.

    With ``prepare_threads``, it also owns a small executor for the work a session needs
    before it waits for a slot (tokenizing a prompt, preparing a text): :meth:`off_loop` runs
    a function there, neither on the event loop nor on an instance's thread."""

    def __init__(
        self,
        name: str,
        instances: Sequence[Instance],
        max_batch_size: int,
        *,
        step: StepFn[S],
        release: ReleaseFn[S],
        cancelled: CancelledFn[S],
        prepare_threads: int = 0,
        early_events: bool = False,
    ) -> None:
        self.name = name
        self.prepare_threads = prepare_threads
        self.early_events = early_events
        """Pass ``step`` an ``emit`` keyword: a function it may call, on the instance's thread,
        with events to send before the step ends (the first tokens of new sessions)."""
        self._pool: ThreadPoolExecutor | None = None
        self.instances = list(instances)
        self.max_batch_size = max(1, max_batch_size)
        self._step = step
        self._release = release
        self._cancelled = cancelled
        self.lanes: list[Lane[S]] = []
        self._drivers: list[asyncio.Task[None]] = []
        self.stopping = False

    # -- counts ---------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Sessions in a batch now, over all instances."""
        return sum(len(lane.running) for lane in self.lanes)

    @property
    def waiting(self) -> int:
        """Sessions waiting for a slot, over all instances."""
        return sum(len(lane.waiting) for lane in self.lanes)

    @property
    def preparing(self) -> int:
        """Sessions submitted whose input is being checked, over all instances."""
        return sum(len(lane.preparing) for lane in self.lanes)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.prepare_threads:
            self._pool = ThreadPoolExecutor(self.prepare_threads, thread_name_prefix=f"modelplex-{self.name}-prepare")
        for inst in self.instances:
            lane: Lane[S] = Lane(inst)
            self.lanes.append(lane)
            self._drivers.append(asyncio.create_task(self._drive(lane), name=f"{self.name}-steps-{inst.index}"))

    async def stop(self) -> None:
        """Stop preparing; let each lane's step in flight finish, then end every session (see
        the module doc)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self.stopping = True
        lanes, self.lanes = self.lanes, []  # a late submit() raises ModelNotReadyError
        for lane in lanes:
            preparing, lane.preparing = lane.preparing, set()
            for s in preparing:
                if not s.done:
                    s.put(self._cancelled(s), final=True)
            lane.wake.set()
        await asyncio.gather(*self._drivers, return_exceptions=True)
        self._drivers.clear()
        for lane in lanes:
            sessions = [*lane.running, *lane.joining, *lane.waiting]
            lane.running, lane.joining, lane.waiting = [], [], collections.deque()
            for s in sessions:
                if not s.done:
                    s.put(self._cancelled(s), final=True)
            await self._release_on(lane, sessions)

    # -- sessions (event loop) ------------------------------------------------------------

    def off_loop(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on the preparing executor; ModelNotReadyError once stopping."""
        pool = self._pool
        if pool is None or self.stopping:
            raise ModelNotReadyError(f"model {self.name!r} is not serving")
        return asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def assign(self, session: S) -> Lane[S]:
        """Put a new session on the least loaded lane, as *preparing*; ModelNotReadyError
        when the scheduler is stopping."""
        if not self.lanes or self.stopping:
            raise ModelNotReadyError(f"model {self.name!r} is not serving")
        lane = min(self.lanes, key=lambda lane: lane.load)
        session.lane = lane
        lane.preparing.add(session)
        return lane

    def enqueue(self, session: S) -> bool:
        """A prepared session waits for a slot; False (and nothing queued) if it is done,
        cancelled, or the scheduler is stopping, in which case the caller ends it."""
        lane = session.lane
        assert lane is not None, "assign() first"
        lane.preparing.discard(session)
        if session.done or self.stopping:
            return False
        if session.cancelled:
            session.done = True
            return False
        lane.waiting.append(session)
        lane.wake.set()
        return True

    def abandon(self, session: S) -> None:
        """A session that failed while being prepared leaves its lane."""
        if session.lane is not None:
            session.lane.preparing.discard(session)

    # -- the driver loop ------------------------------------------------------------------

    async def _drive(self, lane: Lane[S]) -> None:
        model = lane.instance.model
        while not self.stopping:
            if not lane.running and not lane.waiting:  # (preparing sessions wake it when they queue)
                lane.wake.clear()
                await lane.wake.wait()
                continue
            if not await self._step_lane(lane, model):
                # Every running session is paused and nothing else is to do: wait for a reader
                # (or a cancel), a new session, or the earliest deadline.
                lane.wake.clear()
                deadlines = [s.deadline for s in (*lane.running, *lane.waiting) if s.deadline is not None]
                timeout = max(0.0, min(deadlines) - asyncio.get_running_loop().time()) if deadlines else None
                try:
                    await asyncio.wait_for(lane.wake.wait(), timeout)
                except TimeoutError:
                    pass

    async def _step_lane(self, lane: Lane[S], model: Any) -> bool:
        """One step of the lane; False when there was nothing to do. Its own frame, so that no
        reference to the step's sessions outlives it while the lane is idle."""
        now = asyncio.get_running_loop().time()
        leaving = [s for s in lane.running if s.cancelled or s.expired(now)]
        for s in leaving:
            lane.running.remove(s)
            if not s.cancelled:
                s.put(DeadlineExceededError("the deadline passed while the stream was running"))
            s.done = True
        # Waiting sessions that were cancelled or expired leave the queue now, not when a slot frees.
        if any(s.cancelled or s.expired(now) for s in lane.waiting):
            for s in lane.waiting:
                if s.cancelled:
                    s.done = True
                elif s.expired(now):
                    s.put(DeadlineExceededError("the deadline passed before the stream started"))
            lane.waiting = collections.deque(s for s in lane.waiting if not s.done)
        joining = lane.joining = []
        while lane.waiting and len(lane.running) + len(joining) < self.max_batch_size:
            joining.append(lane.waiting.popleft())
        running = [s for s in lane.running if not s.paused]
        if not running and not joining and not leaving:
            return False
        step: Callable[..., list[tuple[S, Any]]] = self._step
        if self.early_events:
            loop = asyncio.get_running_loop()

            def emit(early: Sequence[tuple[S, Any]]) -> None:  # on the instance's thread
                loop.call_soon_threadsafe(_deliver, [(s, item, s.done) for s, item in early])

            step = functools.partial(self._step, emit=emit)  # type: ignore[call-arg]
        try:
            # Events emitted during the step reach the loop before the step's own (FIFO).
            events = await lane.instance.run(step, model, joining, running, leaving)
        except Exception as e:  # the step machinery itself failed: fail its sessions, free them
            err = inference_error(self.name, e)
            events = [(s, err) for s in (*running, *joining)]
            await self._release_on(lane, (*running, *joining, *leaving))
        for s, item in events:
            s.put(item, final=s.done)
        lane.running = [s for s in (*lane.running, *joining) if not s.done]
        lane.joining = []
        return True

    async def _release_on(self, lane: Lane[S], sessions: Sequence[S]) -> None:
        """Release sessions on the lane's thread (at stop, or when a step failed); never raises."""
        if not sessions or lane.instance.model is None:
            return
        try:
            await lane.instance.run(self._release, lane.instance.model, sessions)
        except Exception:
            log.exception("model %r: releasing %d sessions failed", self.name, len(sessions))

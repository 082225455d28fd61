"""The shared runtime pieces on their own: the output stream and the step scheduler
(the batching runtime is exercised through classification in test_runtime.py)."""

from __future__ import annotations

import asyncio

import pytest

from modelplex.errors import DeadlineExceededError, ModelNotReadyError
from modelplex.server.instance import Instance
from modelplex.server.runtimes.steps import StepScheduler, StepSession
from modelplex.server.runtimes.stream import OutputStream


async def _read(stream: OutputStream) -> list:
    return [m async for m in stream]


def test_output_stream_ends_at_its_final_message_and_raises_errors():
    async def main():
        s: OutputStream[int] = OutputStream()
        s.put(1)
        s.put(2, final=True)
        s.put(3)  # after the final: never read
        e: OutputStream[int] = OutputStream()
        e.put(1)
        e.put(ValueError("boom"))
        with pytest.raises(ValueError, match="boom"):
            await _read(e)
        return await _read(s), s.done, e.done

    assert asyncio.run(main()) == ([1, 2], True, True)


def test_output_stream_cancel_drops_later_messages_and_pauses_when_unread():
    async def main():
        woken: list[str] = []
        s: OutputStream[int] = OutputStream(max_pending=3)
        s.on_resume = lambda: woken.append("resume")
        s.on_cancel = lambda: woken.append("cancel")
        for i in range(3):
            s.put(i)
        paused = s.paused
        it = aiter(s)
        first = await anext(it)  # reading one frees a slot: the producer may go on
        s.cancel()
        s.put(99)
        s.cancel()  # once only
        return paused, s.paused, first, s.pending, woken

    assert asyncio.run(main()) == (True, False, 0, 2, ["resume", "cancel"])


class Session(StepSession[str]):
    def __init__(self, name: str, steps: int, deadline: float | None = None) -> None:
        super().__init__(deadline)
        self.name, self.steps, self.held = name, steps, False


class Fake:
    """A model that advances every session one step per call and records each batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.released: list[str] = []

    def step(self, model, joining, running, leaving):  # type: ignore[no-untyped-def]
        self.release(model, leaving)
        for s in joining:
            s.held = True
        batch = [*running, *joining]
        self.batches.append(sorted(s.name for s in batch))
        events = []
        for s in batch:
            s.steps -= 1
            if s.steps == 0:
                s.done = True
                self.release(model, [s])
            events.append((s, f"{s.name}:{s.steps}"))
        return events

    def release(self, model, sessions):  # type: ignore[no-untyped-def]
        for s in sessions:
            if s.held:
                s.held = False
                self.released.append(s.name)


def _scheduler(fake: Fake, max_batch: int = 2) -> tuple[StepScheduler[Session], Instance]:
    inst = Instance("fake", "cpu", 0)
    inst.model = object()  # type: ignore[assignment]
    return (
        StepScheduler("fake", [inst], max_batch, step=fake.step, release=fake.release, cancelled=lambda s: "cancelled"),
        inst,
    )


def _submit(scheduler: StepScheduler[Session], session: Session) -> Session:
    scheduler.assign(session)
    assert scheduler.enqueue(session)
    return session


def test_sessions_over_the_batch_size_wait_and_join_when_a_slot_frees():
    fake = Fake()

    async def main():
        scheduler, inst = _scheduler(fake, max_batch=2)
        scheduler.start()
        a, b, c = (_submit(scheduler, Session(n, k)) for n, k in (("a", 1), ("b", 3), ("c", 2)))
        out = await asyncio.gather(_read(a), _read(b), _read(c))
        await scheduler.stop()
        await inst.close()
        return out

    a, b, c = asyncio.run(main())
    assert (a, b, c) == (["a:0"], ["b:2", "b:1", "b:0"], ["c:1", "c:0"])
    assert fake.batches == [["a", "b"], ["b", "c"], ["b", "c"]]  # c joined when a left
    assert sorted(fake.released) == ["a", "b", "c"]


def test_a_cancelled_session_leaves_before_the_next_step_and_is_released():
    fake = Fake()

    async def main():
        scheduler, inst = _scheduler(fake)
        scheduler.start()
        a = _submit(scheduler, Session("a", 1000))
        it = aiter(a)
        await anext(it)
        a.cancel()
        while "a" not in fake.released:
            await asyncio.sleep(0.001)
        steps = len(fake.batches)
        await asyncio.sleep(0.05)  # nothing is left to step
        await scheduler.stop()
        await inst.close()
        return steps, len(fake.batches), scheduler.running

    steps, after, running = asyncio.run(main())
    assert steps == after and running == 0
    assert steps <= 3  # the step that was in flight when it was cancelled, at most one more


def test_an_expired_session_fails_deadline_exceeded_and_stop_cancels_the_rest():
    fake = Fake()

    async def main():
        scheduler, inst = _scheduler(fake, max_batch=1)
        scheduler.start()
        loop = asyncio.get_running_loop()
        long = _submit(scheduler, Session("long", 10**9))
        expired = _submit(scheduler, Session("late", 5, deadline=loop.time()))  # waits: one slot
        with pytest.raises(DeadlineExceededError):
            await _read(expired)
        it = aiter(long)
        await anext(it)
        await scheduler.stop()
        rest = [m async for m in it]
        with pytest.raises(ModelNotReadyError):
            scheduler.assign(Session("new", 1))
        await inst.close()
        return rest

    rest = asyncio.run(main())
    assert rest[-1] == "cancelled" and "long" in fake.released


def test_run_step_ends_and_releases_the_whole_batch_when_a_step_fails_or_miscounts():
    from modelplex.errors import InvalidInputError
    from modelplex.server.runtimes.base import InferenceError
    from modelplex.server.runtimes.steps import run_step

    refused = InvalidInputError("no")

    def refuse() -> list[int]:
        raise refused

    for call, expected in [
        (lambda: [1], "step returned 1 results for 2 things"),
        (lambda: [1 / 0], "ZeroDivisionError"),
        (refuse, None),
    ]:
        batch, events, released = [Session("a", 1), Session("b", 1)], [], []
        out = run_step(
            "m", None, batch, call, release=lambda model, b, r=released: r.extend(b), events=events, what="things"
        )
        assert out is None and released == batch and all(s.done for s in batch)
        assert [s for s, _ in events] == batch and events[0][1] is events[1][1]
        error = events[0][1]
        if expected is None:
            assert error is refused  # a modelplex error keeps its own status
        else:
            assert isinstance(error, InferenceError) and expected in str(error)
    assert run_step("m", None, batch, lambda: [1, 2], release=lambda m, b: None, events=[], what="x") == [1, 2]

"""BatchingRuntime.enqueue: several jobs queued before any is awaited run together, in order;
a cancelled future's job is dropped unrun."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from modelplex.server.instance import Instance
from modelplex.server.runtimes.batched import BatchingRuntime, BatchingSettings


class Doubler(BatchingRuntime[BatchingSettings, int, int]):
    """Doubles each job; records the batches it ran. The first batch waits for ``gate`` so
    the test can queue behind it."""

    def __init__(self, gate: threading.Event) -> None:
        inst = Instance("doubler", "cpu", 0)
        inst.model = object()  # type: ignore[assignment]
        super().__init__("doubler", [inst], BatchingSettings(max_batch_size=4))
        self.gate = gate
        self.batches: list[list[int]] = []

    def run_batch(self, model: object, jobs: Sequence[int]) -> list[int]:
        self.gate.wait(10)
        self.batches.append(list(jobs))
        return [2 * j for j in jobs]


def test_enqueued_jobs_run_in_one_batch_in_order_and_a_cancelled_one_is_dropped():
    async def main() -> tuple[list[int], list[list[int]], bool]:
        gate = threading.Event()
        rt = Doubler(gate)
        rt.start()
        first = rt.enqueue(0)
        while not rt.batches and rt.queued:  # the worker has taken job 0 and waits on the gate
            await asyncio.sleep(0.001)
        futures = [rt.enqueue(j) for j in (1, 2, 3, 4)]
        futures[1].cancel()  # job 2: its caller went away before it started
        gate.set()
        results = [await first, await futures[0], await futures[2], await futures[3]]
        await rt.stop()
        return results, rt.batches, futures[1].cancelled()

    results, batches, cancelled = asyncio.run(main())
    assert results == [0, 2, 6, 8]
    assert batches == [[0], [1, 3, 4]]
    assert cancelled

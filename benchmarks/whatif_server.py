"""The modelplex server CLI with optional experimental patches, to measure what-ifs.

Not part of modelplex: it monkeypatches the server in this process only, so that
bench_breakdown.py can measure where a request's time goes and what a change would
save or cost, without editing the server.

    python benchmarks/whatif_server.py [--timing FILE] [--servicer-direct | --canned | --asyncio-batcher] \
        -- --config X --port 0

--timing FILE   time, inside the server, the Classify servicer method, the runtime's
                classify() (validation, batch queue, the hop to the instance's thread and
                back) and _run_batch (preprocess + classify, on the instance's thread);
                write their statistics to FILE at exit.
--servicer-direct
                the Classify servicer calls the model itself (runtime._run_batch on the event
                loop): no batch queue, no thread hop. A lower bound, not a design: it blocks
                the loop while the model runs.
--canned        the Classify servicer parses and validates the request as usual but answers
                fixed scores without running the model: protobuf and servicer cost only.
--asyncio-batcher
                the design before commit 0e15c68: an asyncio task per instance takes a batch
                from an asyncio-side queue and hands it to the instance's thread with
                run_in_executor (a concurrent future chained to an asyncio one), then sets
                each request's future; the baseline of that change, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import json
import sys
import time
from pathlib import Path


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(x * 1e6 for x in xs)
    if not xs:
        return {"n": 0}
    pick = lambda q: xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]  # noqa: E731
    return {"n": len(xs), "p50_us": pick(0.5), "p99_us": pick(0.99), "mean_us": sum(xs) / len(xs)}


def patch_timing(path: Path) -> None:
    from modelplex.server.runtimes.classification import ClassificationRuntime
    from modelplex.server.servicers.classification import ImageClassificationServicer

    spans: dict[str, list[float]] = {"servicer": [], "runtime.classify": [], "worker._run_batch": []}
    clock = time.perf_counter

    servicer_classify = ImageClassificationServicer.Classify

    async def timed_servicer(self, request, context):  # type: ignore[no-untyped-def]
        t0 = clock()
        try:
            return await servicer_classify(self, request, context)
        finally:
            spans["servicer"].append(clock() - t0)

    runtime_classify = ClassificationRuntime.classify

    async def timed_classify(self, images, top_k, deadline=None):  # type: ignore[no-untyped-def]
        t0 = clock()
        try:
            return await runtime_classify(self, images, top_k, deadline)
        finally:
            spans["runtime.classify"].append(clock() - t0)

    run_batch = ClassificationRuntime._run_batch

    def timed_run_batch(self, model, jobs):  # type: ignore[no-untyped-def]
        t0 = clock()
        try:
            return run_batch(self, model, jobs)
        finally:
            spans["worker._run_batch"].append(clock() - t0)

    ImageClassificationServicer.Classify = timed_servicer  # type: ignore[method-assign]
    ClassificationRuntime.classify = timed_classify  # type: ignore[method-assign]
    ClassificationRuntime._run_batch = timed_run_batch  # type: ignore[method-assign]

    def dump() -> None:
        path.write_text(json.dumps({k: _stats(v) for k, v in spans.items()}))

    atexit.register(dump)


def _patch_servicer(compute) -> None:  # type: ignore[no-untyped-def]
    """Replace the Classify servicer method by the stock one's code with ``compute(runtime, images, k)``
    in place of ``await runtime.classify(...)``."""
    from modelplex.server.grpc_errors import grpc_errors
    from modelplex.server.runtimes.classification import ClassificationRuntime
    from modelplex.server.servicers.classification import ImageClassificationServicer
    from modelplex.server.servicers.convert import deadline_of, image_from_proto
    from modelplex.specs import Task
    from modelplex_client.pb import image_classification_pb2 as pb

    @grpc_errors
    async def Classify(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        runtime = self._registry.get(request.model, Task.IMAGE_CLASSIFICATION)
        assert isinstance(runtime, ClassificationRuntime)
        images = [image_from_proto(i, img) for i, img in enumerate(request.images)]
        deadline_of(context)
        k = runtime.validate(images, request.top_k)
        results = compute(runtime, images, k)
        return pb.ClassifyResponse(
            request_id=request.request_id,
            model=request.model,
            results=[
                pb.Classification(classes=[pb.ClassScore(index=c.index, label=c.label, score=c.score) for c in r])
                for r in results
            ],
        )

    ImageClassificationServicer.Classify = Classify  # type: ignore[method-assign]


def patch_servicer_direct() -> None:
    from modelplex.server.runtimes.classification import ClassifyJob

    def compute(runtime, images, k):  # type: ignore[no-untyped-def]
        out = runtime._run_batch(runtime.instances[0].model, [ClassifyJob(images, k)])[0]
        if isinstance(out, BaseException):
            raise out
        return out

    _patch_servicer(compute)


def patch_canned() -> None:
    from modelplex.tasks import ClassScore

    def compute(runtime, images, k):  # type: ignore[no-untyped-def]
        return [[ClassScore(i, f"class_{i}", 1.0 / (i + 2)) for i in range(k)] for _ in images]

    _patch_servicer(compute)


def patch_asyncio_batcher() -> None:
    from modelplex.server.batching import Pending, resolve
    from modelplex.server.runtimes.classification import ClassificationRuntime, ClassifyJob

    async def work(self, inst):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        limit = self.config.max_batch_size
        while True:
            while not self._aq:
                waiter = loop.create_future()
                self._idle.append(waiter)
                await waiter
            batch, used = [], 0
            while self._aq:
                head = self._aq[0]
                if head.future.done():
                    self._aq.popleft()
                    continue
                if batch and used + head.size > limit:
                    break
                batch.append(self._aq.popleft())
                used += head.size
            if not batch:
                continue
            try:
                results = await inst.run(self._run_batch, inst.model, [p.payload for p in batch])
            except Exception as e:  # noqa: BLE001
                results = [e] * len(batch)
            resolve(batch, results)

    def start(self):  # type: ignore[no-untyped-def]
        self._aq, self._idle = collections.deque(), collections.deque()
        self._aworkers = [asyncio.create_task(work(self, inst)) for inst in self.instances]

    stock_stop = ClassificationRuntime.stop

    async def stop(self):  # type: ignore[no-untyped-def]
        for task in self._aworkers:
            task.cancel()
        await stock_stop(self)

    async def classify(self, images, top_k, deadline=None):  # type: ignore[no-untyped-def]
        k = self.validate(images, top_k)
        future = asyncio.get_running_loop().create_future()
        self._aq.append(Pending(ClassifyJob(images, k), len(images), future, deadline))
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        return await future

    ClassificationRuntime.start = start  # type: ignore[method-assign]
    ClassificationRuntime.stop = stop  # type: ignore[method-assign]
    ClassificationRuntime.classify = classify  # type: ignore[method-assign]


def main() -> int:
    argv = sys.argv[1:]
    if "--" in argv:
        i = argv.index("--")
        ours, rest = argv[:i], argv[i + 1 :]
    else:
        ours, rest = argv, []
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timing", type=Path)
    p.add_argument("--servicer-direct", action="store_true")
    p.add_argument("--canned", action="store_true")
    p.add_argument("--asyncio-batcher", action="store_true")
    args = p.parse_args(ours)
    if args.timing:
        patch_timing(args.timing)
    if args.servicer_direct:
        patch_servicer_direct()
    if args.canned:
        patch_canned()
    if args.asyncio_batcher:
        patch_asyncio_batcher()
    from modelplex.server.cli import main as cli_main

    return cli_main(rest)


if __name__ == "__main__":
    sys.exit(main())

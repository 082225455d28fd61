"""Scheduling over real gRPC: dynamic batching, parallel instances, cancellation,
deadlines and graceful shutdown, observed through the probe model."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

from modelplex_client import AsyncClient, Client, ServerError
from probe_plugin import PROBES, probe_model


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def run_concurrently(address, n, model, **kw):
    async def main():
        async with AsyncClient(address, timeout=20) as client:
            return await asyncio.gather(
                *(client.classify([bytes([i])], model=model, top_k=1, **kw) for i in range(n)),
                return_exceptions=True,
            )

    return asyncio.run(main())


def test_requests_queued_while_busy_are_batched(probe_server):
    server = probe_server(probe_model(settings={"block": True}, max_batch_size=4))
    probe = None
    results: list = []
    t = threading.Thread(target=lambda: results.extend(run_concurrently(server.address, 9, "probe")))
    t.start()
    wait_until(lambda: "probe" in PROBES and len(PROBES["probe"].batches) == 1)
    probe = PROBES["probe"]
    time.sleep(0.2)  # let the other 8 requests queue behind the blocked first batch
    probe.gate.set()
    t.join(20)
    assert [r[0][0].label for r in results] == [["zero", "one", "two", "three"][i % 4] for i in range(9)]
    sizes = [len(b) for b in probe.batches]
    assert sum(sizes) == 9
    assert max(sizes) == 4  # capped at max_batch_size
    assert len(sizes) <= 4  # 1 + 8 queued, taken 4 at a time


def test_batching_off_runs_one_at_a_time(probe_server):
    server = probe_server(probe_model(max_batch_size=1))
    results = run_concurrently(server.address, 6, "probe")
    assert all(not isinstance(r, Exception) for r in results)
    assert [len(b) for b in PROBES["probe"].batches] == [1] * 6


def test_two_instances_serve_in_parallel(probe_server):
    # The barrier needs both instances inside classify at once: it breaks (INTERNAL)
    # after 10 s if the instances ran one after the other.
    server = probe_server(
        probe_model(devices=["cpu"], instances_per_device=2, max_batch_size=1, settings={"parties": 2})
    )
    results = run_concurrently(server.address, 2, "probe")
    assert all(not isinstance(r, Exception) for r in results), results
    assert len(PROBES["probe"].threads) == 2
    with Client(server.address) as client:
        info = client.get_model("probe")
    assert [i.device for i in info.instances] == ["cpu", "cpu"]


def test_cancelled_request_is_dropped_from_the_queue(probe_server):
    server = probe_server(probe_model(settings={"block": True}, max_batch_size=8))

    async def main():
        async with AsyncClient(server.address, timeout=20) as client:
            first = asyncio.ensure_future(client.classify([b"\x01"], model="probe"))
            await asyncio.to_thread(
                wait_until, lambda: len(PROBES.get("probe", None).batches if "probe" in PROBES else []) == 1
            )
            doomed = asyncio.ensure_future(client.classify([b"\x02"], model="probe"))
            await asyncio.sleep(0.2)
            doomed.cancel()
            await asyncio.sleep(0.2)
            PROBES["probe"].gate.set()
            await first
            last = await client.classify([b"\x03"], model="probe")
            return last

    last = asyncio.run(main())
    assert last[0][0].label == "three"
    seen = [x for batch in PROBES["probe"].batches for x in batch]
    assert seen == [b"\x01", b"\x03"]  # the cancelled request never reached the model


def test_expired_deadline_is_dropped_and_reported(probe_server):
    server = probe_server(probe_model(settings={"block": True}))
    with Client(server.address) as client:
        t = threading.Thread(target=lambda: client.classify([b"\x01"], model="probe", timeout=20))
        t.start()
        wait_until(lambda: "probe" in PROBES and len(PROBES["probe"].batches) == 1)
        with pytest.raises(ServerError) as info:
            client.classify([b"\x02"], model="probe", timeout=0.3)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        PROBES["probe"].gate.set()
        t.join(10)
        client.classify([b"\x03"], model="probe")
    seen = [x for batch in PROBES["probe"].batches for x in batch]
    assert b"\x02" not in seen


def test_queue_full_is_resource_exhausted(probe_server):
    server = probe_server(probe_model(settings={"block": True}, max_queue_size=2, max_batch_size=1))
    results: list = []
    t = threading.Thread(target=lambda: results.extend(run_concurrently(server.address, 6, "probe")))
    t.start()
    wait_until(lambda: "probe" in PROBES and len(PROBES["probe"].batches) == 1)
    time.sleep(0.3)
    PROBES["probe"].gate.set()
    t.join(20)
    codes = [r.code for r in results if isinstance(r, ServerError)]
    assert codes and set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert len([r for r in results if not isinstance(r, Exception)]) == 3  # 1 running + 2 queued


def test_graceful_shutdown_finishes_in_flight_calls(probe_server):
    server = probe_server(probe_model(settings={"block": True}))
    with Client(server.address, timeout=20) as client:
        results: list = []
        t = threading.Thread(target=lambda: results.append(client.classify([b"\x01"], model="probe", top_k=1)))
        t.start()
        wait_until(lambda: "probe" in PROBES and len(PROBES["probe"].batches) == 1)
        stopping = asyncio.run_coroutine_threadsafe(server.server.stop(grace=10), server.loop)
        time.sleep(0.3)
        assert not stopping.done()  # waits for the in-flight call
        PROBES["probe"].gate.set()
        stopping.result(10)
        t.join(10)
    assert results[0][0][0].label == "one"
    assert PROBES["probe"].unloaded == 1


def test_unload_answers_the_batch_that_is_running(probe_server):
    server = probe_server(probe_model(settings={"block": True}))
    with Client(server.address, timeout=20) as client:
        results: list = []
        t = threading.Thread(target=lambda: results.append(client.classify([b"\x01"], model="probe", top_k=1)))
        t.start()
        wait_until(lambda: "probe" in PROBES and len(PROBES["probe"].batches) == 1)
        unloading = threading.Thread(target=client.unload_model, args=("probe",))
        unloading.start()
        time.sleep(0.2)
        PROBES["probe"].gate.set()
        unloading.join(10)
        t.join(10)
    assert results and results[0][0][0].label == "one"
    assert PROBES["probe"].unloaded == 1


def test_a_failed_load_unloads_every_instance_it_built(probe_server):
    from modelplex.errors import ModelLoadError

    server = probe_server()
    with pytest.raises(ModelLoadError):
        # the second instance fails in load(): both must be unloaded, whatever they took
        server.call(server.server.registry.load(_failing_second_instance_config()))
    assert PROBES["half"].unloaded == 2  # the loaded one, and the half-loaded one


def _failing_second_instance_config():
    from modelplex.server.config import ModelConfig

    return ModelConfig.model_validate(probe_model("half", instances_per_device=2, settings={"fail_second_load": True}))


def test_cpu_instances_split_the_cores_between_their_torch_threads(probe_server, monkeypatch):
    import os

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = os.cpu_count() or 1
    probe_server(probe_model("split", instances_per_device=2), probe_model("one", cpu_threads=1))
    assert PROBES["split"].torch_threads == [max(1, cores // 2)] * 2
    assert PROBES["one"].torch_threads == [1]


def test_omp_num_threads_is_the_budget_when_set(probe_server, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    probe_server(probe_model("omp", instances_per_device=2))
    assert PROBES["omp"].torch_threads == [1, 1]


def test_a_cancelled_unload_still_answers_the_queue_and_unloads(probe_server):
    server = probe_server(probe_model(settings={"block": True}, max_batch_size=1))
    with Client(server.address, timeout=20) as client:
        results: list = []
        running = threading.Thread(target=lambda: results.append(client.classify([b"\x01"], model="probe")))
        running.start()
        wait_until(lambda: "probe" in PROBES and len(PROBES["probe"].batches) == 1)
        queued_error: list = []

        def queued() -> None:
            try:
                client.classify([b"\x02"], model="probe")
            except ServerError as e:
                queued_error.append(e.code)

        waiting = threading.Thread(target=queued)
        waiting.start()
        time.sleep(0.2)
        with pytest.raises(ServerError) as info:
            client.unload_model("probe", timeout=0.3)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        waiting.join(5)
        assert queued_error == [grpc.StatusCode.UNAVAILABLE]  # answered, not left hanging
        PROBES["probe"].gate.set()
        running.join(10)
        wait_until(lambda: PROBES["probe"].unloaded == 1)
    # The instance thread ends once unload returns (its executor is shut down without waiting).
    wait_until(lambda: not any(t.name.startswith("modelplex-probe-") for t in threading.enumerate() if t.is_alive()))
    assert results


def test_a_model_that_fails_to_load_at_startup_is_named_in_the_error(tmp_path):
    from modelplex.errors import ModelLoadError
    from modelplex.testing import running_server

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    models = [
        {"spec": "dcgan", "name": "gen-ok", "weights": "random", "devices": ["cpu"]},
        {"spec": "dcgan", "name": "gen-b", "weights": str(junk), "devices": ["cpu"]},
    ]
    with pytest.raises(ModelLoadError, match=r"^model 'gen-b': ") as info:
        with running_server({"models": models}):
            pass
    assert "junk.pt" in str(info.value)


def test_a_models_runtime_is_built_off_the_event_loop(probe_server, monkeypatch):
    """A runtime may read files as it is built (a beam decoder's LM): never on the loop."""
    from modelplex.tasks.classification.runtime import ClassificationRuntime

    built: list[bool] = []
    init = ClassificationRuntime.__init__

    def recording_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(asyncio._get_running_loop() is not None)  # noqa: SLF001 - is a loop running here?
        init(self, *args, **kwargs)

    monkeypatch.setattr(ClassificationRuntime, "__init__", recording_init)
    server = probe_server()
    from modelplex.server.config import ModelConfig

    server.call(server.server.registry.load(ModelConfig.model_validate(probe_model("off-loop"))))
    assert built == [False]
    with Client(server.address, timeout=30) as client:
        assert [m.name for m in client.list_models()] == ["off-loop"]

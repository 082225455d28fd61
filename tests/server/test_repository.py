"""ModelRepository over gRPC: list, describe, load and unload at run time."""

from __future__ import annotations

import grpc
import pytest

from modelplex_client import Client, ServerError
from modelplex_client.pb import image_classification_pb2, models_pb2
from probe_plugin import PROBES, probe_model


def code_of(fn):
    with pytest.raises(ServerError) as info:
        fn()
    return info.value.code, info.value.details


def test_get_model_reports_weights_instances_and_memory(probe_server):
    server = probe_server(probe_model(instances_per_device=2))
    with Client(server.address) as client:
        info = client.get_model("probe")
        assert info.state == models_pb2.MODEL_STATE_READY
        assert info.task == "image_classification"
        assert (info.spec, info.plugin, info.variant) == ("probe", "probe", "v1")
        assert info.weights.source == models_pb2.WEIGHTS_SOURCE_RANDOM and info.weights.uri == ""
        assert [(i.device, i.memory_bytes) for i in info.instances] == [("cpu", 1234), ("cpu", 1234)]
        extra = image_classification_pb2.ImageClassificationInfo()
        assert info.task_info.Unpack(extra)
        assert extra.num_classes == 4 and list(extra.input_shape) == [1, 2, 2]
        assert [m.name for m in client.list_models()] == ["probe"]
        assert code_of(lambda: client.get_model("nope"))[0] == grpc.StatusCode.NOT_FOUND


def test_load_and_unload_at_run_time(probe_server):
    server = probe_server()
    with Client(server.address, timeout=10) as client:
        assert client.list_models() == []
        info = client.load_model(
            "probe",
            name="p2",
            devices=["cpu"],
            task_settings=image_classification_pb2.ImageClassificationSettings(max_batch_size=2),
            settings={"fail": False},
        )
        assert info.name == "p2" and info.max_batch_size == 2 and info.state == models_pb2.MODEL_STATE_READY
        assert client.classify([b"\x01"], model="p2", top_k=1)[0][0].label == "one"
        assert (
            code_of(lambda: client.load_model("probe", name="p2", devices=["cpu"]))[0] == grpc.StatusCode.ALREADY_EXISTS
        )
        client.unload_model("p2")
        assert PROBES["p2"].unloaded == 1
        assert code_of(lambda: client.classify([b"\x01"], model="p2"))[0] == grpc.StatusCode.NOT_FOUND
        assert code_of(lambda: client.unload_model("p2"))[0] == grpc.StatusCode.NOT_FOUND
        assert client.health("modelplex.model/p2") == "SERVICE_UNKNOWN"  # gone, not kept NOT_SERVING


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spec": "nope"}, "no plugin registered a spec named 'nope'"),
        ({"spec": ""}, "LoadModel needs `spec`"),
        ({"spec": "probe", "variant": "v9"}, "has no variant 'v9'; variants: v1"),
        ({"spec": "probe", "settings": {"colour": 1}}, "settings.colour: unknown key"),
        ({"spec": "probe", "devices": ["cuda:7"]}, "device 'cuda:7' does not exist"),
        ({"spec": "probe", "weights": "/no/such/file.pt"}, "only under the server's weights roots"),
        ({"spec": "probe", "weights": "/etc/passwd"}, "only under the server's weights roots"),  # same answer
        ({"spec": "probe", "weights": "ROOT/no-such-file.pt"}, "no-such-file.pt does not exist"),
    ],
)
def test_bad_load_requests(probe_server, kwargs, message, tmp_path):
    server = probe_server(server={"weights_roots": [str(tmp_path)]})
    if "weights" in kwargs:
        kwargs["weights"] = kwargs["weights"].replace("ROOT", str(tmp_path))
    with Client(server.address) as client:
        spec = kwargs.pop("spec")
        code, details = code_of(lambda: client.load_model(spec, **kwargs))
        assert message in details
        assert code in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert client.list_models() == []


def test_runtime_loading_can_be_turned_off(probe_server):
    server = probe_server(probe_model(), server={"allow_runtime_loading": False})
    with Client(server.address) as client:
        assert code_of(lambda: client.load_model("probe", name="x"))[0] == grpc.StatusCode.FAILED_PRECONDITION
        assert code_of(lambda: client.unload_model("probe"))[0] == grpc.StatusCode.FAILED_PRECONDITION
        assert client.get_model("probe").state == models_pb2.MODEL_STATE_READY


def test_wrong_task_is_invalid_argument(probe_server):
    from modelplex.errors import WrongTaskError
    from modelplex.specs import Task

    server = probe_server(probe_model())
    with pytest.raises(WrongTaskError, match="serves image_classification, not text_generation"):
        server.server.registry.get("probe", Task.TEXT_GENERATION)


def test_health_and_reflection(probe_server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server = probe_server(probe_model())
    with Client(server.address) as client:
        assert client.health() == "SERVING"
        assert client.health("modelplex.v1.ImageClassification") == "SERVING"
        assert client.health("modelplex.model/probe") == "SERVING"
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in next(responses).list_services_response.service}
    assert {
        "modelplex.v1.ModelRepository",
        "modelplex.v1.ImageClassification",
        "grpc.health.v1.Health",
    } <= names


def test_health_of_an_unknown_name_is_service_unknown(probe_server):
    server = probe_server()
    with Client(server.address) as client:
        assert client.health("modelplex.model/never-loaded") == "SERVICE_UNKNOWN"


def test_server_health_is_not_serving_until_its_models_are_loaded():
    import asyncio
    import threading
    import time

    from modelplex.server.app import ModelServer
    from modelplex.server.config import Config
    from probe_plugin import PLUGINS

    config = Config.model_validate(
        {"server": {"port": 0}, "models": [probe_model("slow", settings={"block_load": True})]}
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ModelServer(config, extra_plugins=PLUGINS)
    starting = asyncio.run_coroutine_threadsafe(server.start(), loop)
    try:
        deadline = time.monotonic() + 10
        while "slow" not in PROBES or server.port is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with Client(f"127.0.0.1:{server.port}") as client:
            assert client.health() == "NOT_SERVING"
            PROBES["slow"].load_gate.set()
            starting.result(10)
            assert client.health() == "SERVING"
    finally:
        PROBES["slow"].load_gate.set()
        asyncio.run_coroutine_threadsafe(server.stop(grace=0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        PROBES.clear()


def test_model_info_carries_the_models_counters(probe_server):
    server = probe_server(probe_model())
    with Client(server.address) as client:
        client.classify([b"\x01", b"\x02", b"\x03"], model="probe")
        client.classify([b"\x01"], model="probe")
        stats = client.get_model("probe").stats
    assert (stats.outputs, stats.output_unit, stats.batches, stats.active, stats.queued) == (4, "images", 2, 0, 0)
    assert stats.mean_batch_size == 2.0 and stats.mean_queue_wait_ms >= 0

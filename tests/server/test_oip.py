"""The Open Inference Protocol front door with the project's own stubs, over real gRPC: the
wire forms of tensors (raw and typed contents, every numeric datatype), a precise status for
every malformed request (and the server serves on), a task without a mapping, streams that
stop their work when the client leaves, and the repository extension's auth scopes."""

from __future__ import annotations

import struct
import threading
from dataclasses import replace

import grpc
import numpy as np
import pytest

from modelplex import ModelSpec, Variant, hookimpl
from modelplex.server.oip_tensors import serialize_bytes
from modelplex.tasks.classification.task import TASK as CLASSIFICATION
from modelplex.testing import running_server
from modelplex_client.pb import grpc_predict_v2_pb2 as pb
from modelplex_client.pb import grpc_predict_v2_pb2_grpc as pb_grpc
from oip_tensors import outputs
from probe_plugin import PLUGINS, PROBES, ClassificationMeta, ProbeClassifier, ProbeSettings, probe_model

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def stub(probe_server):
    server = probe_server(probe_model(max_images_per_request=4))
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def images_request(*images: bytes, raw: bool = True, **parameters: object) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="probe", id="r")
    tensor = request.inputs.add(name="images", datatype="BYTES", shape=[len(images)])
    if raw:
        request.raw_input_contents.append(serialize_bytes(images))
    else:
        tensor.contents.bytes_contents.extend(images)
    for name, value in parameters.items():
        setattr(request.parameters[name], {int: "int64_param", str: "string_param"}[type(value)], value)
    return request


def test_raw_in_raw_out_and_typed_contents_in_typed_contents_out(stub):
    raw = stub.ModelInfer(images_request(b"\x01", b"\x06", top_k=2), timeout=10)
    typed = stub.ModelInfer(images_request(b"\x01", b"\x06", raw=False, top_k=2), timeout=10)
    assert len(raw.raw_output_contents) == 3 and not any(o.HasField("contents") for o in raw.outputs)
    assert not typed.raw_output_contents and all(o.HasField("contents") for o in typed.outputs)
    for response in (raw, typed):
        got = outputs(response)
        assert response.id == "r" and response.model_name == "probe"
        assert got["indices"].tolist() == [[1, 0], [2, 0]]  # the probe's class: first byte mod 4
        assert got["labels"].tolist() == [[b"one", b"zero"], [b"two", b"zero"]]
        assert [float(x) for x in got["scores"].ravel()] == [1.0, 0.0, 1.0, 0.0]


def test_only_the_requested_outputs_come_back_in_the_declared_order(stub):
    request = images_request(b"\x03")
    request.outputs.add(name="labels")
    request.outputs.add(name="scores")
    response = stub.ModelInfer(request, timeout=10)
    assert [o.name for o in response.outputs] == ["scores", "labels"]


@pytest.mark.parametrize("raw", [True, False])
def test_a_float_batch_in_either_form(stub, raw):
    request = pb.ModelInferRequest(model_name="probe")
    values = np.array([5.0, 0, 0, 0, 2.0, 0, 0, 0], dtype="<f4")
    tensor = request.inputs.add(name="pixel_values", datatype="FP32", shape=[2, 1, 2, 2])
    if raw:
        request.raw_input_contents.append(values.tobytes())
    else:
        tensor.contents.fp32_contents.extend(values.tolist())
    got = outputs(stub.ModelInfer(request, timeout=10))
    assert got["indices"][:, 0].tolist() == [1, 2]


def _with_input(name, datatype, shape, raw=None, **contents):
    request = pb.ModelInferRequest(model_name="probe")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


def _request(**fields):
    request = images_request(b"\x01")
    for name, value in fields.items():
        if name == "parameters":
            for key, (kind, v) in value.items():
                setattr(request.parameters[key], kind, v)
        elif name == "outputs":
            for output in value:
                request.outputs.add(name=output)
        else:
            setattr(request, name, value)
    return request


def _output_parameter():
    request = images_request(b"\x01")
    request.outputs.add(name="scores").parameters["classification"].int64_param = 3
    return request


def _shared_memory():
    request = images_request(b"\x01")
    request.inputs[0].parameters["shared_memory_region"].string_param = "region0"
    return request


CASES = {
    "unknown model": (_request(model_name="nope"), grpc.StatusCode.NOT_FOUND, "no model named 'nope'"),
    "no model": (_request(model_name=""), INVALID, "names no model"),
    "a version": (_request(model_version="2"), grpc.StatusCode.NOT_FOUND, "leave the version empty"),
    "unknown input": (_with_input("foo", "FP32", [1], raw=b"\0" * 4), INVALID, "unknown input 'foo'"),
    "wrong datatype": (_with_input("images", "INT32", [1], raw=b"\0" * 4), INVALID, "must be BYTES, got INT32"),
    "wrong rank": (_with_input("pixel_values", "FP32", [1, 4], raw=b"\0" * 16), INVALID, "must have shape"),
    "wrong fixed size": (_with_input("pixel_values", "FP32", [1, 1, 2, 3], raw=b"\0" * 24), INVALID, "[-1, 1, 2, 2]"),
    "unknown datatype": (_with_input("images", "BF16", [1], raw=b"\0\0"), INVALID, "datatype 'BF16' is not one of"),
    "negative dimension": (_with_input("images", "BYTES", [-1], raw=b""), INVALID, "negative dimension"),
    "raw size": (_with_input("pixel_values", "FP32", [1, 1, 2, 2], raw=b"\0" * 15), INVALID, "15 bytes; 4 FP32"),
    "bytes length past the end": (
        _with_input("images", "BYTES", [1], raw=struct.pack("<I", 99) + b"ab"),
        INVALID,
        "element 0 claims 99 bytes; 2 are left",
    ),
    "bytes trailing": (_with_input("images", "BYTES", [1], raw=serialize_bytes([b"a"]) + b"x"), INVALID, "follow"),
    "huge count": (_with_input("images", "BYTES", [2**40], raw=b"abcd"), INVALID, "cannot hold"),
    "contents count": (_with_input("pixel_values", "FP32", [1, 1, 2, 2], fp32_contents=[1.0]), INVALID, "has 1"),
    "fp16 contents": (_with_input("pixel_values", "FP16", [1, 1, 2, 2]), INVALID, "send it in raw_input_contents"),
    "missing input": (pb.ModelInferRequest(model_name="probe"), INVALID, "exactly one of the inputs"),
    "both inputs": (
        _with_input("images", "BYTES", [1], bytes_contents=[b"\x01"]),
        INVALID,
        "exactly one of",
    ),
    "unknown parameter": (_request(parameters={"topk": ("int64_param", 1)}), INVALID, "unknown parameter 'topk'"),
    "parameter kind": (_request(parameters={"top_k": ("string_param", "3")}), INVALID, "must be an integer"),
    "top_k range": (_request(parameters={"top_k": ("int64_param", 9)}), INVALID, "top_k must be between 1 and 4"),
    "bad timeout": (_request(parameters={"timeout": ("string_param", "1s")}), INVALID, "microseconds"),
    "unknown output": (_request(outputs=["logits"]), INVALID, "unknown output 'logits'"),
    "output parameter": (_output_parameter(), INVALID, "output 'scores': parameter 'classification' is not taken"),
    "shared memory": (_shared_memory(), INVALID, "input 'images': parameter 'shared_memory_region' is not taken"),
    "too many images": (images_request(*[b"\x01"] * 5), INVALID, "at most 4"),
    "corrupt image": (images_request(b"bad image"), INVALID, "image 0: cannot decode"),
}
CASES["both inputs"][0].inputs.add(
    name="pixel_values", datatype="FP32", shape=[1, 1, 2, 2]
).contents.fp32_contents.extend([0.0] * 4)
CASES["empty batch"] = (_with_input("images", "BYTES", [0], raw=b""), INVALID, "images is empty")


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_request_gets_a_precise_status_and_the_server_serves_on(stub, case):
    request, code, words = CASES[case]
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code() == code, info.value.details()
    assert words in info.value.details()
    assert outputs(stub.ModelInfer(images_request(b"\x02"), timeout=10))["indices"][0, 0] == 2


def test_raw_contents_for_some_inputs_only_is_refused(stub):
    request = _with_input("images", "BYTES", [1], raw=serialize_bytes([b"\x01"]))
    request.inputs.add(name="pixel_values", datatype="FP32", shape=[1, 1, 2, 2])
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code() == INVALID and "1 entries for 2 inputs" in info.value.details()


class NoMapping:
    """Registers a task with no OIP mapping (and a spec of it)."""

    @hookimpl
    def register_tasks(self, register):  # type: ignore[no-untyped-def]
        register(replace(CLASSIFICATION, id="acme.plain", services=("acme.v1.Plain",), oip=None))

    @hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        meta = ClassificationMeta(num_classes=4)
        variants = (Variant("v1", "plain", meta),)
        register(ModelSpec("plain", "acme.plain", ProbeClassifier, variants, settings=ProbeSettings))


def test_a_task_without_a_mapping_is_described_and_unimplemented():
    config = {"models": [{"spec": "plain", "weights": "random", "devices": ["cpu"]}]}
    plugins = [*PLUGINS, ("plain", NoMapping())]
    with running_server(config, extra_plugins=plugins) as s, grpc.insecure_channel(s.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="plain"), timeout=10)
        assert meta.platform == "modelplex/acme.plain" and not meta.inputs
        assert stub.ModelReady(pb.ModelReadyRequest(name="plain"), timeout=10).ready
        request = images_request(b"\x01")
        request.model_name = "plain"
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "no Open Inference Protocol mapping; call acme.v1.Plain" in info.value.details()
        [answer] = list(stub.ModelStreamInfer(iter([request]), timeout=10))
        assert answer.error_message.startswith("UNIMPLEMENTED: ") and answer.infer_response.id == "r"


def test_a_stream_of_requests_answers_each_in_turn(stub):
    requests = [images_request(bytes([i])) for i in range(3)] + [images_request(b"bad")]
    for i, r in enumerate(requests):
        r.id = f"s{i}"
    answers = {a.infer_response.id: a for a in stub.ModelStreamInfer(iter(requests), timeout=10)}
    assert sorted(answers) == ["s0", "s1", "s2", "s3"]
    for i in range(3):
        assert outputs(answers[f"s{i}"].infer_response)["indices"][0, 0] == i % 4
        assert answers[f"s{i}"].infer_response.parameters["triton_final_response"].bool_param
    assert answers["s3"].error_message.startswith("INVALID_ARGUMENT: image 0: cannot decode")


def test_a_malformed_message_on_the_stream_ends_it_invalid_argument(probe_server):
    server = probe_server(probe_model())
    with grpc.insecure_channel(server.address) as channel:
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=lambda b: b,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            list(call(iter([images_request(b"\x01").SerializeToString(), b"\xff\xff\xff"]), timeout=10))
        assert info.value.code() == INVALID and "not a valid inference.ModelInferRequest" in info.value.details()


def test_server_and_model_readiness(probe_server):
    server = probe_server(probe_model())
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name="probe"), timeout=10).ready
        assert not stub.ModelReady(pb.ModelReadyRequest(name="probe", version="3"), timeout=10).ready
        server.call(server.server.registry.unload("probe"))
        assert not stub.ModelReady(pb.ModelReadyRequest(name="probe"), timeout=10).ready
        index = stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
        assert list(index.models) == []


def test_repository_calls_need_the_management_scope(tmp_path, probe_server):
    inference, management = "inference-token-0123456789", "management-token-0123456789"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{inference} inference\n{management} management\n")
    server = probe_server(probe_model(), server={"auth": {"tokens_file": str(tokens)}, "allow_runtime_loading": True})

    def bearer(token):
        return (("authorization", f"Bearer {token}"),)

    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        load = pb.RepositoryModelLoadRequest(model_name="p2")
        load.parameters["config"].string_param = '{"spec": "probe", "weights": "random", "devices": ["cpu"]}'
        for call, request in [(stub.RepositoryModelLoad, load), (stub.RepositoryModelUnload, None)]:
            request = request or pb.RepositoryModelUnloadRequest(model_name="p2")
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=20, metadata=bearer(inference))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            call(request, timeout=20, metadata=bearer(management))
        # Inference-scope calls: the index, metadata and inference.
        assert stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10, metadata=bearer(inference)).models
        stub.ModelInfer(images_request(b"\x01"), timeout=10, metadata=bearer(inference))
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(images_request(b"\x01"), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_load_refuses_what_loadmodel_refuses(probe_server):
    server = probe_server(probe_model(), server={"allow_runtime_loading": True, "max_models": 3})
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def load(name, config=None, **params):
            request = pb.RepositoryModelLoadRequest(model_name=name)
            if config is not None:
                request.parameters["config"].string_param = config
            for key, value in params.items():
                request.parameters[key].bytes_param = value
            try:
                stub.RepositoryModelLoad(request, timeout=20)
            except grpc.RpcError as e:
                return e.code(), e.details()
            return grpc.StatusCode.OK, ""

        assert load("probe") == (grpc.StatusCode.OK, "")  # loaded already, no config: nothing to do
        assert load("x", "[1]")[0] == INVALID and "JSON object" in load("x", "[1]")[1]
        assert load("x", "{")[0] == INVALID
        code, details = load("x", '{"spec": "probe", "weights": "/etc/passwd"}')
        assert code == grpc.StatusCode.PERMISSION_DENIED and "weights roots" in details
        code, details = load("x", '{"spec": "probe", "weights": "random", "max_batch_size": 0}')
        assert code == INVALID and "max_batch_size" in details
        code, details = load("x", '{"spec": "probe", "weights": "random", "bogus": 1}')
        assert code == INVALID and "bogus" in details
        code, details = load("x", None, **{"file:1/model.pt": b"weights"})
        assert code == INVALID and "file:1/model.pt" in details
        probe = '{"spec": "probe", "weights": "random", "devices": ["cpu"]}'
        assert load("p2", probe) == (grpc.StatusCode.OK, "")
        assert load("p2", probe)[0] == grpc.StatusCode.ALREADY_EXISTS
        assert load("p3", probe) == (grpc.StatusCode.OK, "")
        code, details = load("p4", probe)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_models" in details


def test_a_stream_whose_client_leaves_drops_its_queued_work(probe_server):
    """The model holds the stream's first request; the second waits in the queue; the client
    cancels the stream: the second never reaches the model, and the server serves on."""
    server = probe_server(probe_model(settings={"block": True}))
    runtime = server.server.registry.get("probe", "image_classification")
    probe = PROBES["probe"]
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        done = threading.Event()

        def requests():
            yield images_request(b"\x01")
            wait_until(lambda: len(probe.batches) == 1)
            yield images_request(b"\x02")
            done.wait(30)

        call = stub.ModelStreamInfer(requests(), timeout=30)
        wait_until(lambda: runtime.queued == 1)
        call.cancel()
        # The queue drops a cancelled request when it next takes a batch; wait for the cancel to land.
        wait_until(lambda: runtime._queue._items[0].future.cancelled())
        done.set()
        probe.gate.set()
        assert outputs(stub.ModelInfer(images_request(b"\x03"), timeout=10))["indices"][0, 0] == 3
    assert [x for batch in probe.batches for x in batch] == [b"\x01", b"\x03"]


def wait_until(condition, tries: int = 600) -> None:
    """Poll ``condition`` (bounded in count; no assertion on time)."""
    for _ in range(tries):
        if condition():
            return
        threading.Event().wait(0.02)
    raise AssertionError("the condition never held")

"""Every bad Classify input gets its documented status code (docs/api.md, "Errors"),
and the server keeps serving after each."""

from __future__ import annotations

import struct

import grpc
import pytest

from modelplex_client import Client, ServerError
from modelplex_client.pb import common_pb2
from modelplex_client.pb import image_classification_pb2 as pb
from probe_plugin import probe_model


def tensor(shape, dtype=common_pb2.DATA_TYPE_FLOAT32, data=None):
    n = 1
    for s in shape:
        n *= s
    return common_pb2.Tensor(
        shape=shape, dtype=dtype, data=data if data is not None else struct.pack(f"<{n}f", *[2.0] * n)
    )


@pytest.fixture
def client(probe_server):
    server = probe_server(probe_model(max_images_per_request=4), server={"max_message_mb": 1})
    with Client(server.address, timeout=10) as c:
        yield c


def status(fn):
    with pytest.raises(ServerError) as info:
        fn()
    return info.value.code, info.value.details


CASES = {
    "unknown model": (
        dict(model="nope", images=[b"\x01"]),
        grpc.StatusCode.NOT_FOUND,
        "no model named 'nope'",
    ),
    "empty model name": (dict(model="", images=[b"\x01"]), grpc.StatusCode.INVALID_ARGUMENT, "names no model"),
    "corrupt image": (
        dict(images=[b"\x01", b"bad bytes"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "image 1: cannot decode",
    ),
    "empty image": (dict(images=[b""]), grpc.StatusCode.INVALID_ARGUMENT, "image 0 is empty"),
    "empty batch": (dict(images=[]), grpc.StatusCode.INVALID_ARGUMENT, "images is empty"),
    "too many images": (dict(images=[b"\x01"] * 5), grpc.StatusCode.INVALID_ARGUMENT, "at most 4"),
    "top_k too large": (
        dict(images=[b"\x01"], top_k=5),
        grpc.StatusCode.INVALID_ARGUMENT,
        "between 1 and 4 (0 means 4: min(5, classes))",
    ),
    "top_k negative": (dict(images=[b"\x01"], top_k=-1), grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
    "tensor wrong shape": (
        dict(images=[tensor([1, 3, 3])]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "shape must be [1, 2, 2]",
    ),
    "tensor wrong dtype": (
        dict(images=[tensor([1, 2, 2], dtype=common_pb2.DATA_TYPE_FLOAT16, data=b"\0" * 8)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "dtype must be FLOAT32",
    ),
    "tensor unset dtype": (
        dict(images=[tensor([1, 2, 2], dtype=common_pb2.DATA_TYPE_UNSPECIFIED)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "dtype is unset",
    ),
    "tensor short data": (
        dict(images=[tensor([1, 2, 2], data=b"\0" * 12)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "needs 16",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_its_status_and_server_keeps_serving(client, case):
    fields, code, message = CASES[case]
    fields = {"model": "probe", "top_k": 1, **fields}
    images = [
        pb.Image(tensor=i) if isinstance(i, common_pb2.Tensor) else pb.Image(encoded=i) for i in fields.pop("images")
    ]
    request = pb.ClassifyRequest(images=images, **fields)
    got_code, details = status(lambda: client.classify_request(request))
    assert got_code == code
    assert message in details
    assert client.classify([b"\x02"], model="probe", top_k=1)[0][0].label == "two"


def test_image_with_no_content(client):
    request = pb.ClassifyRequest(model="probe", images=[pb.Image()])
    code, details = status(lambda: client.classify_request(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "neither" in details


def test_message_over_the_size_limit(client):
    code, details = status(lambda: client.classify([b"\x01" * (2 * 1024 * 1024)], model="probe"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.classify([b"\x01"], model="probe", top_k=1)[0][0].label == "one"


def test_raw_tensor_is_accepted(client):
    top = client.classify_request(
        pb.ClassifyRequest(model="probe", top_k=2, images=[pb.Image(tensor=tensor([1, 2, 2]))])
    )
    assert [c.label for c in top.results[0].classes] == ["two", "zero"]


def test_request_id_is_echoed(client):
    response = client.classify_request(
        pb.ClassifyRequest(model="probe", request_id="abc-1", images=[pb.Image(encoded=b"\x03")])
    )
    assert response.request_id == "abc-1" and response.model == "probe"
    assert len(response.results[0].classes) == 4  # top_k 0 means 5, capped at the 4 classes


def test_plugin_failure_is_internal_and_server_keeps_serving(probe_server):
    server = probe_server(probe_model("boom", settings={"fail": True}), probe_model("fine"))
    with Client(server.address, timeout=10) as client:
        code, details = status(lambda: client.classify([b"\x01"], model="boom"))
        assert code == grpc.StatusCode.INTERNAL
        assert "RuntimeError: probe exploded" in details
        assert client.classify([b"\x01"], model="fine", top_k=1)[0][0].label == "one"
        code, _ = status(lambda: client.classify([b"\x01"], model="boom"))
        assert code == grpc.StatusCode.INTERNAL


def test_model_still_loading_is_unavailable(probe_server):
    import threading

    from probe_plugin import PROBES

    server = probe_server()
    with Client(server.address, timeout=10) as client:
        loader = threading.Thread(
            target=client.load_model,
            args=("probe",),
            kwargs={"name": "late", "settings": {"block_load": True}},
        )
        loader.start()
        try:
            for _ in range(200):
                if "late" in PROBES:
                    break
                threading.Event().wait(0.01)
            code, details = status(lambda: client.classify([b"\x01"], model="late"))
            assert code == grpc.StatusCode.UNAVAILABLE and "loading" in details
            assert client.health("modelplex.model/late") == "NOT_SERVING"
        finally:
            PROBES["late"].load_gate.set()
            loader.join(10)
        assert client.classify([b"\x01"], model="late", top_k=1)[0][0].label == "one"
        assert client.health("modelplex.model/late") == "SERVING"


def test_huge_client_strings_do_not_hide_the_status(client):
    """Error messages repeat clipped client input: gRPC drops details over 16 KiB, which the
    client would see as RESOURCE_EXHAUSTED instead of the real status."""
    code, details = status(lambda: client.classify([b"\x01"], model="x" * 20000))
    assert code == grpc.StatusCode.NOT_FOUND and "20000 characters" in details
    request = pb.ClassifyRequest(model="probe", images=[pb.Image(tensor=tensor([7] * 100000, data=b""))])
    code, details = status(lambda: client.classify_request(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "100000 dimensions" in details
    code, details = status(lambda: client.load_model("probe", name="L" * 17000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "128 characters" in details

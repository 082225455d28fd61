"""Image generation over the Open Inference Protocol front door, over real gRPC: the model's
tensors in ModelMetadata, ModelInfer's images equal to typed Generate's and to the saved module
run in process, one response per image on ModelStreamInfer, and bad input as INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch

import imagegen_models as im
from modelplex.server.oip_tensors import serialize_bytes
from modelplex.testing import running_server
from modelplex_client.pb import grpc_predict_v2_pb2 as pb
from modelplex_client.pb import grpc_predict_v2_pb2_grpc as pb_grpc
from modelplex_client.pb import image_generation_pb2 as ig
from modelplex_client.pb import image_generation_pb2_grpc as ig_grpc
from oip_tensors import outputs

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagegen-oip")
    dcgan_path, dcgan = im.save_dcgan(root / "dcgan")
    biggan_dir, biggan = im.save_biggan(root / "biggan")
    return {"dcgan": (dcgan_path, dcgan), "biggan": (biggan_dir, biggan)}


@pytest.fixture(scope="module")
def server(nets):
    models = [
        {
            "name": "dcgan",
            "spec": "dcgan",
            "weights": str(nets["dcgan"][0]),
            "devices": ["cpu"],
            "settings": {"nz": 16, "ngf": 8},
            "max_batch_size": 4,
            "max_images_per_request": 8,
        },
        {"name": "biggan", "spec": "biggan-deep-128", "weights": str(nets["biggan"][0]), "devices": ["cpu"]},
    ]
    with running_server({"models": models}) as s:
        yield s


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.GRPCInferenceServiceStub(channel)


def infer_request(model: str, raw: bool = False, **inputs) -> pb.ModelInferRequest:
    """Inputs as typed contents (or all as raw_input_contents): an int INT64 [1], a float FP32 [1],
    a str BYTES [1], an array FP32 of its shape."""
    request = pb.ModelInferRequest(model_name=model, id="q")
    for name, value in inputs.items():
        if isinstance(value, str):
            t = request.inputs.add(name=name, datatype="BYTES", shape=[1])
            if raw:
                request.raw_input_contents.append(serialize_bytes([value]))
            else:
                t.contents.bytes_contents.append(value.encode())
            continue
        if isinstance(value, int):
            array, datatype, field = np.array([value], dtype="<i8"), "INT64", "int64_contents"
        else:
            array = np.asarray(value, dtype="<f4").reshape(np.shape(value) or (1,))
            datatype, field = "FP32", "fp32_contents"
        t = request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if raw:
            request.raw_input_contents.append(array.tobytes())
        else:
            getattr(t.contents, field).extend(array.reshape(-1).tolist())
    return request


def typed_images(channel, model: str, **fields) -> list:
    request = ig.ImageGenerationGenerateRequest(
        model=model, output=ig.ImageOutput(format=ig.IMAGE_FORMAT_FLOAT32), **fields
    )
    return list(ig_grpc.ImageGenerationStub(channel).Generate(request, timeout=60))


def test_metadata_names_the_models_tensors(stub):
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="biggan"), timeout=30)
    assert meta.platform == "modelplex/image_generation"
    inputs = {t.name: (t.datatype, list(t.shape)) for t in meta.inputs}
    assert inputs == {
        "seed": ("INT64", [1]),
        "num_images": ("INT64", [1]),
        "class_index": ("INT64", [1]),
        "class_name": ("BYTES", [1]),
        "truncation": ("FP32", [1]),
        "latent": ("FP32", [-1, 8]),
    }
    outputs_ = {t.name: (t.datatype, list(t.shape)) for t in meta.outputs}
    assert outputs_ == {
        "images": ("FP32", [-1, 3, 128, 128]),
        "seeds": ("INT64", [-1]),
        "class_indices": ("INT64", [-1]),
    }


def test_infer_gives_typed_generates_images_and_the_in_process_ones(stub, channel, nets):
    response = stub.ModelInfer(infer_request("dcgan", seed=40, num_images=3), timeout=60)
    got = outputs(response)
    assert response.id == "q" and got["images"].shape == (3, 3, 64, 64)
    assert got["seeds"].tolist() == [40, 41, 42] and got["class_indices"].tolist() == [-1, -1, -1]
    typed = typed_images(channel, "dcgan", num_images=3, seed=40)
    for i, r in enumerate(typed):
        assert np.array_equal(got["images"][i], im.tensor_of(r).numpy())
        expected = im.reference("dcgan", nets["dcgan"][1], 40 + i)[0]
        torch.testing.assert_close(torch.from_numpy(got["images"][i].copy()), expected, atol=1e-6, rtol=0)


def test_classes_truncation_and_latents(stub, channel, nets):
    got = outputs(stub.ModelInfer(infer_request("biggan", seed=9, num_images=2, class_name="goldfish"), timeout=60))
    assert got["class_indices"].tolist() == [1, 1]
    by_index = outputs(stub.ModelInfer(infer_request("biggan", seed=9, num_images=2, class_index=1), timeout=60))
    assert np.array_equal(got["images"], by_index["images"])
    truncated = outputs(stub.ModelInfer(infer_request("biggan", seed=9, class_index=1, truncation=0.5), timeout=60))
    [typed] = typed_images(channel, "biggan", num_images=1, seed=9, class_index=1, truncation=0.5)
    assert np.array_equal(truncated["images"][0], im.tensor_of(typed).numpy())
    latents = np.linspace(-1, 1, 2 * 16, dtype=np.float32).reshape(2, 16)
    for raw in (False, True):
        got = outputs(stub.ModelInfer(infer_request("dcgan", raw=raw, seed=3, latent=latents), timeout=60))
        assert got["images"].shape == (2, 3, 64, 64) and got["seeds"].tolist() == [3, 4]
        for i in range(2):
            expected = im.reference("dcgan", nets["dcgan"][1], 3 + i, latent=torch.from_numpy(latents[i]))[0]
            torch.testing.assert_close(torch.from_numpy(got["images"][i].copy()), expected, atol=1e-6, rtol=0)


def test_a_negative_seed_is_the_same_64_bits(stub, channel):
    got = outputs(stub.ModelInfer(infer_request("dcgan", seed=-2, num_images=3), timeout=60))
    assert got["seeds"].tolist() == [-2, -1, 0]
    typed = typed_images(channel, "dcgan", num_images=3, seed=2**64 - 2)
    assert [r.seed for r in typed] == [2**64 - 2, 2**64 - 1, 0]
    for i, r in enumerate(typed):
        assert np.array_equal(got["images"][i], im.tensor_of(r).numpy())


def test_a_stream_gives_one_response_per_image_the_last_final(stub):
    request = infer_request("dcgan", seed=7, num_images=5)
    answers = list(stub.ModelStreamInfer(iter([request]), timeout=60))
    assert [a.error_message for a in answers] == [""] * 5
    assert [outputs(a.infer_response)["seeds"].tolist() for a in answers] == [[7], [8], [9], [10], [11]]
    finals = [a.infer_response.parameters["triton_final_response"].bool_param for a in answers]
    assert finals == [False] * 4 + [True]
    whole = outputs(stub.ModelInfer(request, timeout=60))
    for i, a in enumerate(answers):
        assert np.array_equal(outputs(a.infer_response)["images"][0], whole["images"][i])


@pytest.mark.parametrize(
    "model,inputs,message",
    [
        ("dcgan", {"num_images": 0}, "num_images must be between 1 and 8 for this model, got 0"),
        ("dcgan", {"num_images": 9}, "num_images must be between 1 and 8 for this model, got 9"),
        ("dcgan", {"class_index": 2}, "model 'dcgan' is unconditional: it takes no class_index or class_name"),
        ("biggan", {"class_name": "unicorn"}, "model 'biggan' has no class named 'unicorn'"),
        ("biggan", {"class_index": 1, "class_name": "goldfish"}, "send at most one of the inputs 'class_index'"),
        ("biggan", {"truncation": 1.5}, "truncation must be in (0, 1], got 1.5"),
        ("dcgan", {"num_images": 3, "latent": np.zeros((2, 16))}, "latent has 32 values; num_images 3 x"),
        ("dcgan", {"latent": np.zeros((2, 15))}, "input 'latent' must have shape [-1, 16]"),
    ],
)
def test_bad_input_is_invalid_argument_and_the_server_serves_on(stub, model, inputs, message):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(infer_request(model, **inputs), timeout=60)
    assert info.value.code() == INVALID and message in info.value.details()
    assert outputs(stub.ModelInfer(infer_request("dcgan", seed=1), timeout=60))["seeds"].tolist() == [1]

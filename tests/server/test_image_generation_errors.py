"""Bad ImageGeneration input gets a precise status and message over real gRPC, and the server
keeps serving: num_images, classes, latents, truncation, formats, a pickled checkpoint, a
model of another task, a full queue."""

from __future__ import annotations

import pickle

import grpc
import pytest
import torch

import imagegen_models as im
from modelplex.testing import running_server
from modelplex_client import Client, ServerError
from modelplex_client.pb import image_generation_pb2 as pb
from modelplex_client.pb import image_generation_pb2_grpc as pb_grpc
from probe_plugin import PLUGINS, probe_model

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagegen-errors")
    dcgan, _ = im.save_dcgan(root / "dcgan")
    biggan, _ = im.save_biggan(root / "biggan")
    return {"dcgan": dcgan, "biggan": biggan, "root": root}


@pytest.fixture(scope="module")
def server(paths):
    models = [
        {
            "name": "dcgan",
            "spec": "dcgan",
            "weights": str(paths["dcgan"]),
            "devices": ["cpu"],
            "settings": {"nz": 16, "ngf": 8},
            "max_images_per_request": 8,
            "max_batch_size": 2,
        },
        {"name": "biggan", "spec": "biggan-deep-128", "weights": str(paths["biggan"]), "devices": ["cpu"]},
        {
            "name": "tiny-queue",
            "spec": "dcgan",
            "weights": "random",
            "devices": ["cpu"],
            "settings": {"nz": 4, "ngf": 2, "image_size": 8},
            "max_batch_size": 1,
            "max_queue_size": 2,
        },
        probe_model("classifier"),
    ]
    config = {"models": models, "server": {"weights_roots": [str(paths["root"])]}}
    with running_server(config, extra_plugins=PLUGINS) as s:
        yield s


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.ImageGenerationStub(channel)


def refused(stub, rpc="Generate", **fields):
    request = (pb.ImageGenerationGenerateRequest if rpc == "Generate" else pb.InterpolateRequest)(**fields)
    with pytest.raises(grpc.RpcError) as info:
        list(getattr(stub, rpc)(request, timeout=30))
    assert list(stub.Generate(pb.ImageGenerationGenerateRequest(model="dcgan", num_images=1), timeout=30))
    return info.value.code(), info.value.details()


@pytest.mark.parametrize("num_images", [0, -1, 9])
def test_num_images_zero_or_over_the_limit(stub, num_images):
    code, details = refused(stub, model="dcgan", num_images=num_images)
    assert code == INVALID and details == f"num_images must be between 1 and 8 for this model, got {num_images}"


def test_an_unknown_class_name(stub):
    code, details = refused(stub, model="biggan", num_images=1, class_name="unicorn")
    assert code == INVALID and "no class named 'unicorn'" in details and "'tench'" in details


def test_a_class_index_out_of_range(stub):
    code, details = refused(stub, model="biggan", num_images=1, class_index=1000)
    assert code == INVALID and details == "class_index must be between 0 and 999, got 1000"


@pytest.mark.parametrize("field", [{"class_index": 3}, {"class_name": "goldfish"}])
def test_a_class_for_an_unconditional_model(stub, field):
    code, details = refused(stub, model="dcgan", num_images=1, **field)
    assert code == INVALID and details == "model 'dcgan' is unconditional: it takes no class_index or class_name"


def test_a_latent_of_the_wrong_size(stub):
    code, details = refused(stub, model="dcgan", num_images=2, latent=[0.0] * 17)
    assert code == INVALID and details == "latent has 17 values; num_images 2 x latent_size 16 = 32 expected"
    code, details = refused(stub, model="dcgan", num_images=1, latent=[0.0] * 15 + [float("nan")])
    assert code == INVALID and details == "latent 0 holds a NaN or infinite value"


@pytest.mark.parametrize("truncation", [0.0, -0.5, 1.5, float("nan"), float("inf")])
def test_truncation_out_of_range(stub, truncation):
    code, details = refused(stub, model="biggan", num_images=1, truncation=truncation)
    assert code == INVALID and details.startswith("truncation must be in (0, 1], got ")


def test_bad_output_options(stub):
    code, details = refused(
        stub, model="dcgan", num_images=1, output=pb.ImageOutput(format=pb.IMAGE_FORMAT_JPEG, jpeg_quality=101)
    )
    assert code == INVALID and details == "jpeg_quality must be between 1 and 100 (0 means 90), got 101"
    code, details = refused(stub, model="dcgan", num_images=1, output=pb.ImageOutput(format=9))
    assert code == INVALID and details == "output.format 9 is not an ImageFormat this server knows"


def test_bad_interpolations(stub):
    seed = pb.InterpolationEndpoint(seed=1)
    code, details = refused(stub, "Interpolate", model="dcgan", num_images=1, start=seed, end=seed)
    assert code == INVALID and details == "num_images must be between 2 and 8 for this model, got 1"
    code, details = refused(stub, "Interpolate", model="dcgan", num_images=3, start=seed)
    assert code == INVALID and details == "end has neither a seed nor a latent"
    short = pb.InterpolationEndpoint(latent=pb.LatentVector(values=[1.0, 2.0]))
    code, details = refused(stub, "Interpolate", model="dcgan", num_images=3, start=seed, end=short)
    assert code == INVALID and details == "end.latent has 2 values; this model's latent_size is 16"


def test_a_model_of_another_task_and_an_unknown_model(stub):
    code, details = refused(stub, model="classifier", num_images=1)
    assert code == INVALID and "image_classification" in details
    code, details = refused(stub, model="nope", num_images=1)
    assert code == grpc.StatusCode.NOT_FOUND


def test_a_full_queue_refuses_the_whole_request_at_once(stub):
    # max_batch_size 1 and max_queue_size 2: 3 images are 3 pieces, more than the queue holds
    # even when idle (pieces are queued all at once, before any runs).
    code, details = refused(stub, model="tiny-queue", num_images=3)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_queue_size" in details
    assert (
        len(list(stub.Generate(pb.ImageGenerationGenerateRequest(model="tiny-queue", num_images=2), timeout=30))) == 2
    )


def test_a_pickled_checkpoint_is_refused_with_how_to_convert_it(server, paths):
    pkl = paths["root"] / "network-snapshot.pkl"
    pkl.write_bytes(pickle.dumps({"G_ema": "a network object would be here"}))
    with Client(server.address, timeout=60) as client:
        with pytest.raises(ServerError) as info:
            client.load_model("stylegan2", name="from-pkl", weights=str(pkl))
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "is a pickle" in info.value.details and "convert_weight.py" in info.value.details
        # A .pt whose pickle holds a whole module, not tensors: weights_only refuses it.
        module_pt = paths["root"] / "whole-module.pt"
        torch.save(im.dcgan_net(), module_pt)
        with pytest.raises(ServerError) as info:
            client.load_model("dcgan", name="whole-module", weights=str(module_pt), settings={"nz": 16, "ngf": 8})
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "weights_only=True" in info.value.details and "state_dict()" in info.value.details
        assert {m.name for m in client.list_models()} == {"dcgan", "biggan", "tiny-queue", "classifier"}

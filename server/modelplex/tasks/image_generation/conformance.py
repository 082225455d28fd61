"""The calls the conformance kit makes against an image generator."""

from __future__ import annotations

from typing import Any

from modelplex.taskdef import ConformanceProbes
from modelplex_client.pb import image_generation_pb2 as pb
from modelplex_client.pb import image_generation_pb2_grpc as pb_grpc
from modelplex_client.pb import models_pb2, models_pb2_grpc

__all__ = ["PROBES"]


def _limit(channel: Any, model: str) -> int:
    """The model's max_images_per_request, from its ModelInfo."""
    info = models_pb2_grpc.ModelRepositoryStub(channel).GetModel(models_pb2.GetModelRequest(model=model), timeout=60)
    task_info = pb.ImageGenerationInfo()
    assert info.model.task_info.Unpack(task_info), "ModelInfo.task_info is not an ImageGenerationInfo"
    return task_info.max_images_per_request


def _sample(channel: Any, model: str) -> None:
    n = min(2, _limit(channel, model))
    request = pb.ImageGenerationGenerateRequest(model=model, num_images=n, seed=1)
    responses = list(pb_grpc.ImageGenerationStub(channel).Generate(request, timeout=60))
    assert [r.index for r in responses] == list(range(n)), responses
    assert all(r.image.encoded.startswith(b"\x89PNG") for r in responses), "the images are not PNG files"


def _invalid(channel: Any, model: str) -> None:
    request = pb.ImageGenerationGenerateRequest(model=model, num_images=0)
    list(pb_grpc.ImageGenerationStub(channel).Generate(request, timeout=60))


def _cancel(channel: Any, model: str) -> None:
    request = pb.ImageGenerationGenerateRequest(model=model, num_images=min(32, _limit(channel, model)), seed=1)
    call = pb_grpc.ImageGenerationStub(channel).Generate(request, timeout=60)
    next(call)
    call.cancel()


PROBES = ConformanceProbes(sample=_sample, invalid=_invalid, cancel=_cancel)

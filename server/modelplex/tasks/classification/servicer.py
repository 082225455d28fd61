"""modelplex.v1.ImageClassification over the classification runtime."""

from __future__ import annotations

from typing import cast

from grpc import aio

from modelplex.errors import InvalidInputError
from modelplex.server.grpc_errors import deadline_of, grpc_errors
from modelplex.taskdef import RuntimeLookup
from modelplex.tasks.classification.interface import EncodedImage, RawTensor
from modelplex.tasks.classification.runtime import ClassificationRuntime
from modelplex_client.pb import common_pb2
from modelplex_client.pb import image_classification_pb2 as pb
from modelplex_client.pb import image_classification_pb2_grpc as pb_grpc

__all__ = ["ImageClassificationServicer", "add_servicers", "image_from_proto"]

_DTYPES = {
    common_pb2.DATA_TYPE_FLOAT32: "float32",
    common_pb2.DATA_TYPE_FLOAT16: "float16",
    common_pb2.DATA_TYPE_BFLOAT16: "bfloat16",
    common_pb2.DATA_TYPE_UINT8: "uint8",
    common_pb2.DATA_TYPE_INT64: "int64",
}


def image_from_proto(index: int, image: pb.Image) -> EncodedImage | RawTensor:
    kind = image.WhichOneof("content")
    if kind == "encoded":
        return EncodedImage(image.encoded)
    if kind == "tensor":
        t = image.tensor
        dtype = _DTYPES.get(t.dtype)  # type: ignore[call-overload]
        if dtype is None:
            raise InvalidInputError(f"image {index}: tensor dtype is unset or unknown ({t.dtype}); use FLOAT32")
        return RawTensor(tuple(t.shape), dtype, t.data)
    raise InvalidInputError(f"image {index} has neither `encoded` nor `tensor` set")


class ImageClassificationServicer(pb_grpc.ImageClassificationServicer):
    def __init__(self, runtimes: RuntimeLookup) -> None:
        self._runtimes = runtimes

    @grpc_errors
    async def Classify(self, request: pb.ClassifyRequest, context: aio.ServicerContext) -> pb.ClassifyResponse:
        runtime = cast(ClassificationRuntime, self._runtimes(request.model))
        images = [image_from_proto(i, img) for i, img in enumerate(request.images)]
        results = await runtime.classify(images, request.top_k, deadline_of(context))
        return pb.ClassifyResponse(
            request_id=request.request_id,
            model=request.model,
            results=[
                pb.Classification(classes=[pb.ClassScore(index=c.index, label=c.label, score=c.score) for c in r])
                for r in results
            ],
        )


def add_servicers(runtimes: RuntimeLookup, server: aio.Server) -> None:
    pb_grpc.add_ImageClassificationServicer_to_server(ImageClassificationServicer(runtimes), server)

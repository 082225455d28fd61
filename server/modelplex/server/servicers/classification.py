"""modelplex.v1.ImageClassification over the classification runtime."""

from __future__ import annotations

from grpc import aio

from modelplex.server.grpc_errors import grpc_errors
from modelplex.server.registry import ModelRegistry
from modelplex.server.runtimes.classification import ClassificationRuntime
from modelplex.server.servicers.convert import deadline_of, image_from_proto
from modelplex.specs import Task
from modelplex_client.pb import image_classification_pb2 as pb
from modelplex_client.pb import image_classification_pb2_grpc as pb_grpc

__all__ = ["ImageClassificationServicer"]


class ImageClassificationServicer(pb_grpc.ImageClassificationServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    @grpc_errors
    async def Classify(self, request: pb.ClassifyRequest, context: aio.ServicerContext) -> pb.ClassifyResponse:
        runtime = self._registry.get(request.model, Task.IMAGE_CLASSIFICATION)
        assert isinstance(runtime, ClassificationRuntime)
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

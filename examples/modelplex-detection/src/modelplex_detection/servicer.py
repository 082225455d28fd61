"""modelplex.contrib.detection.v1.ObjectDetection over the detection runtime."""

from __future__ import annotations

from typing import cast

from grpc import aio
from modelplex.runtime import RuntimeLookup, deadline_of, grpc_errors

from modelplex_detection.interface import Detection
from modelplex_detection.pb import detection_pb2 as pb
from modelplex_detection.pb import detection_pb2_grpc as pb_grpc
from modelplex_detection.runtime import DetectionRuntime

__all__ = ["ObjectDetectionServicer", "add_servicers"]


class ObjectDetectionServicer(pb_grpc.ObjectDetectionServicer):
    """Translates Detect calls to the runtime of the named model, and back."""

    def __init__(self, runtimes: RuntimeLookup) -> None:
        self._runtimes = runtimes

    @grpc_errors
    async def Detect(self, request: pb.DetectRequest, context: aio.ServicerContext) -> pb.DetectResponse:
        # The lookup only ever returns a ready model of this task, so of this runtime.
        runtime = cast(DetectionRuntime, self._runtimes(request.model))
        threshold = request.score_threshold if request.HasField("score_threshold") else None
        results = await runtime.detect(list(request.images), threshold, request.max_detections, deadline_of(context))
        return pb.DetectResponse(
            request_id=request.request_id,
            model=request.model,
            results=[pb.Detections(detections=[_detection(d) for d in r]) for r in results],
        )


def _detection(d: Detection) -> pb.Detection:
    b = d.box
    return pb.Detection(
        box=pb.BoundingBox(x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max),
        label_index=d.label_index,
        label=d.label,
        score=d.score,
    )


def add_servicers(runtimes: RuntimeLookup, server: aio.Server) -> None:
    """The task's :data:`modelplex.taskdef.ServicerInstaller`."""
    pb_grpc.add_ObjectDetectionServicer_to_server(ObjectDetectionServicer(runtimes), server)

"""The object-detection task's definition, registered by :mod:`modelplex_detection.plugin`."""

from __future__ import annotations

from modelplex import TaskDefinition

from modelplex_detection import TASK_ID
from modelplex_detection.conformance import PROBES
from modelplex_detection.interface import DetectionMeta, ObjectDetector
from modelplex_detection.pb import detection_pb2 as pb
from modelplex_detection.runtime import DetectionRuntime
from modelplex_detection.servicer import add_servicers
from modelplex_detection.settings import DetectionSettings

__all__ = ["TASK"]

TASK = TaskDefinition(
    id=TASK_ID,
    interface=ObjectDetector,
    services=(pb.DESCRIPTOR.services_by_name["ObjectDetection"].full_name,),
    add_servicers=add_servicers,
    runtime=DetectionRuntime,
    settings=DetectionSettings,
    settings_message=pb.ObjectDetectionSettings.DESCRIPTOR.full_name,
    meta=DetectionMeta,
    conformance=PROBES,
    description="A batch of images in; the boxes, labels and scores of the objects in each out (dynamic batching).",
)

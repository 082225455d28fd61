"""modelplex-detection: object detection as a modelplex task, over torchvision's detectors.

The distribution brings a whole task through the ``register_tasks`` hook: its gRPC
service ``modelplex.contrib.detection.v1.ObjectDetection`` (generated code in
:mod:`modelplex_detection.pb`), the :class:`ObjectDetector` interface, a batching
runtime and a servicer; and, through ``register_models``, one spec per torchvision
architecture. Importing this package imports neither torch nor the server.
"""

from modelplex_detection.interface import BoundingBox, Detection, DetectionMeta, ObjectDetector

TASK_ID = "modelplex_contrib.object_detection"
"""The task's id: what a spec's ``task`` names, and what ListModels reports."""

__all__ = ["TASK_ID", "BoundingBox", "Detection", "DetectionMeta", "ObjectDetector"]

"""Object detection: the interface a model implements, its value types and its variant meta.

This is what another distribution implements to serve its own detector under this
task (a spec with ``task=modelplex_detection.TASK_ID`` whose factory returns an
:class:`ObjectDetector`); :mod:`modelplex_detection.models` is the torchvision one.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelplex import TaskModel, VariantMeta

__all__ = ["BoundingBox", "Detection", "DetectionMeta", "ObjectDetector"]


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """An axis-aligned box in pixels of the input image; (0, 0) is its top-left corner."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float


@dataclass(frozen=True, slots=True)
class Detection:
    """One object found in one image."""

    box: BoundingBox
    label_index: int
    """Index into the detector's ``labels``."""
    label: str
    score: float
    """Confidence in [0, 1]."""


@dataclass(frozen=True)
class DetectionMeta(VariantMeta):
    """What a detector's variant says about itself (the task's variant meta type)."""

    num_classes: int | None = None
    """Class labels, the background included."""
    box_map: float | None = None
    """Box mAP on COCO val2017, as its publisher reports it."""


class ObjectDetector(TaskModel):
    """A detector. The server batches requests dynamically: it calls ``preprocess`` once
    per image (a failure fails only that request), then ``detect`` on up to
    ``max_batch_size`` preprocessed images at once. Both run on the instance's thread."""

    labels: Sequence[str]
    """Class names, indexed by ``Detection.label_index``."""
    max_detections: int = 100
    """The most detections ``detect`` can return per image; requests may ask for up to it."""
    min_score: float = 0.0
    """The model's own score floor: it never returns a detection scoring lower."""

    @abstractmethod
    def preprocess(self, image: bytes) -> Any:
        """Decode one encoded image (JPEG, PNG, WebP, BMP) into one model input.
        Raise :class:`modelplex.InvalidInputError` for bytes that are not such an image."""

    @abstractmethod
    def detect(self, inputs: Sequence[Any], score_threshold: float, max_detections: int) -> list[list[Detection]]:
        """Detect the objects in a batch of preprocessed inputs: for each, the detections
        scoring at least ``score_threshold``, best first, at most ``max_detections``.
        Boxes are in pixels of the image as it was decoded."""

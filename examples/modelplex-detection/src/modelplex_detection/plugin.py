"""The entry point of modelplex-detection: registers the object-detection task and
one spec per torchvision detection architecture.

Registration imports nothing heavy: the task's definition imports grpc, protobuf and
the generated code (whose descriptors reflection then serves), never torch; torch and
torchvision are imported by the factory, when an instance is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelplex import LoadContext, ModelSpec, TaskDefinition, Variant, hookimpl
from pydantic import BaseModel, ConfigDict, Field

from modelplex_detection import TASK_ID
from modelplex_detection.interface import DetectionMeta, ObjectDetector

__all__ = ["ARCHITECTURES", "Architecture", "DetectorSettings", "register_models", "register_tasks"]

_REFERENCES = "https://github.com/pytorch/vision/tree/main/references/detection"


@dataclass(frozen=True)
class Architecture:
    """One torchvision detection builder and its COCO weights."""

    builder: str
    """The name of the builder in ``torchvision.models.detection``; also the spec's name."""
    weights: str
    """The weights enum member, as ``torchvision.models.get_weight`` reads it."""
    meta: DetectionMeta
    description: str


# The facts below are the weights enums' meta (checked against torchvision by the tests),
# written out so that registering the specs does not import torchvision.
ARCHITECTURES = (
    Architecture(
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1",
        DetectionMeta(
            num_params=19386354,
            recipe=f"{_REFERENCES}#faster-r-cnn-mobilenetv3-large-320-fpn",
            num_classes=91,
            box_map=22.8,
        ),
        "Faster R-CNN, MobileNetV3-Large FPN backbone, low resolution (320 px): fast on a CPU.",
    ),
    Architecture(
        "fasterrcnn_resnet50_fpn",
        "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
        DetectionMeta(
            num_params=41755286, recipe=f"{_REFERENCES}#faster-r-cnn-resnet-50-fpn", num_classes=91, box_map=37.0
        ),
        "Faster R-CNN, ResNet-50 FPN backbone (800 px).",
    ),
    Architecture(
        "retinanet_resnet50_fpn",
        "RetinaNet_ResNet50_FPN_Weights.COCO_V1",
        DetectionMeta(num_params=34014999, recipe=f"{_REFERENCES}#retinanet", num_classes=91, box_map=36.4),
        "RetinaNet, ResNet-50 FPN backbone (800 px): single-stage, focal loss.",
    ),
    Architecture(
        "ssdlite320_mobilenet_v3_large",
        "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
        DetectionMeta(
            num_params=3440060, recipe=f"{_REFERENCES}#ssdlite320-mobilenetv3-large", num_classes=91, box_map=21.3
        ),
        "SSDlite, MobileNetV3-Large backbone (320 px): the smallest and fastest.",
    ),
)


class DetectorSettings(BaseModel):
    """The ``settings`` of a torchvision detector's ``[[models]]`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    labels: tuple[str, ...] | None = Field(default=None, min_length=2)
    """Class names of a checkpoint fine-tuned on other classes, indexed by label, the
    background first; their number sets the head's classes. None: COCO's 91."""


def _factory(arch: Architecture) -> Callable[[LoadContext[DetectorSettings]], ObjectDetector]:
    def build(ctx: LoadContext[DetectorSettings]) -> ObjectDetector:
        from modelplex_detection.models import TorchvisionDetector  # imports torch

        return TorchvisionDetector(arch, ctx)

    return build


@hookimpl
def register_tasks(register: Callable[[TaskDefinition], None]) -> None:
    """Register object detection (its service, runtime and settings)."""
    from modelplex_detection.task import TASK

    register(TASK)


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register one spec per architecture, each with its COCO weights as its one variant."""
    for arch in ARCHITECTURES:
        register(
            ModelSpec(
                name=arch.builder,
                task=TASK_ID,
                factory=_factory(arch),
                variants=(Variant("COCO_V1", weights=arch.weights, meta=arch.meta, description="COCO 2017"),),
                settings=DetectorSettings,
                description=arch.description,
            )
        )

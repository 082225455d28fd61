"""The modelplex entry point: registers one image-classification spec per architecture.

Importing this module imports neither torch nor torchvision: the specs are built from
the static :mod:`modelplex_vision.catalog`, and the classifier module is imported
only when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from modelplex import (
    ClassificationMeta,
    ImagePreprocessing,
    LoadContext,
    ModelSpec,
    Task,
    Variant,
    hookimpl,
)
from modelplex_vision.catalog import ARCHITECTURES, Architecture, WeightsVariant
from modelplex_vision.settings import VisionSettings

if TYPE_CHECKING:
    from modelplex_vision.classifier import TorchvisionClassifier

__all__ = ["build_specs", "register_models"]


def _build_classifier(arch: Architecture, ctx: LoadContext) -> TorchvisionClassifier:
    from modelplex_vision.classifier import TorchvisionClassifier

    return TorchvisionClassifier(arch, ctx)


def _variant(arch: Architecture, w: WeightsVariant) -> Variant:
    meta = ClassificationMeta(
        num_classes=w.num_classes,
        input_shape=(3, w.crop_size, w.crop_size),
        preprocessing=ImagePreprocessing(
            crop_size=w.crop_size,
            resize_size=w.resize_size,
            mean=w.mean,
            std=w.std,
            interpolation=w.interpolation,
        ),
        num_params=w.num_params,
        recipe=w.recipe,
    )
    return Variant(name=w.name, weights=arch.weights_id(w.name), meta=meta, description=w.note)


_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_WIDEST_HEAD = 4096
"""In-features of the widest classifier head of the catalog (VGG's): a head of other classes
adds at most this many parameters a class."""


def _memory_estimate(variant: Variant, settings: VisionSettings) -> int:
    """An upper bound of one instance's parameters and buffers: the variant's, plus a head of
    ``num_classes`` classes, with 25% for buffers and the allocator."""
    meta = variant.meta
    params = getattr(meta, "num_params", None) or 0
    classes = settings.num_classes or (len(settings.labels) if settings.labels else 0)
    base_classes = getattr(meta, "num_classes", None) or 0
    params += max(0, classes - base_classes) * _WIDEST_HEAD
    return int(params * _BYTES[settings.dtype] * 1.25)


def _spec(arch: Architecture) -> ModelSpec:
    return ModelSpec(
        memory_estimate=_memory_estimate,
        name=arch.name,
        task=Task.IMAGE_CLASSIFICATION,
        factory=partial(_build_classifier, arch),
        variants=tuple(_variant(arch, w) for w in arch.variants),
        default_variant=arch.default,
        settings=VisionSettings,
        description=f"{arch.title} image classifier (torchvision.models.{arch.builder})",
    )


def build_specs() -> list[ModelSpec]:
    """The specs this plugin registers, one per architecture of the catalog."""
    return [_spec(arch) for arch in ARCHITECTURES]


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register every torchvision classifier of the catalog."""
    for spec in build_specs():
        register(spec)

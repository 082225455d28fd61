"""Image classification: the interface a model implements, its value types and its variant meta."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelplex.specs import VariantMeta
from modelplex.tasks.base import TaskModel

__all__ = ["ClassScore", "ClassificationMeta", "EncodedImage", "ImageClassifier", "ImagePreprocessing", "RawTensor"]


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """An image file's bytes (JPEG, PNG, WebP, BMP), as the client sent them."""

    data: bytes


@dataclass(frozen=True, slots=True)
class RawTensor:
    """A preprocessed float32 tensor, row-major little-endian. The server has
    already checked that ``shape`` equals the model's ``input_shape``, that
    ``dtype`` is ``"float32"`` and that ``data`` has the right length."""

    shape: tuple[int, ...]
    dtype: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ClassScore:
    """One class of one image's top-k."""

    index: int
    label: str
    score: float


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an encoded image becomes the model's input tensor (torchvision's presets)."""

    crop_size: int
    resize_size: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class ClassificationMeta(VariantMeta):
    """What a classifier's variant says about itself."""

    num_classes: int | None = None
    """Output classes."""
    input_shape: tuple[int, ...] | None = None
    """Shape of one preprocessed input, e.g. (3, 224, 224)."""
    preprocessing: ImagePreprocessing | None = None


class ImageClassifier(TaskModel):
    """A classifier. The server batches requests dynamically: it calls
    ``preprocess`` once per image (a failure fails only that request), then
    ``classify`` on up to ``max_batch_size`` preprocessed images at once."""

    labels: Sequence[str]
    """Class names, indexed by class index."""
    input_shape: tuple[int, ...]
    """Shape of one preprocessed image, e.g. (3, 224, 224)."""

    @abstractmethod
    def preprocess(self, image: EncodedImage | RawTensor) -> Any:
        """Turn one image into one model input (a tensor of ``input_shape``).
        Raise InvalidInputError for an image that cannot be decoded."""

    @abstractmethod
    def classify(self, inputs: Sequence[Any], top_k: int) -> list[list[ClassScore]]:
        """Classify a batch of preprocessed inputs; return the top ``top_k``
        classes of each, best first, with softmax scores."""

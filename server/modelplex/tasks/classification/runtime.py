"""Image classification on the shared dynamic-batching runtime."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelplex.errors import InvalidInputError, ModelplexError
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import inference_error
from modelplex.server.runtimes.batched import BatchingRuntime
from modelplex.tasks.classification.interface import ClassScore, EncodedImage, ImageClassifier, RawTensor
from modelplex.tasks.classification.settings import ClassificationSettings
from modelplex_client.pb import image_classification_pb2 as pb

log = logging.getLogger(__name__)

__all__ = ["ClassificationRuntime", "ClassifyJob"]

_ITEMSIZE = {"float32": 4}

Image = EncodedImage | RawTensor
Result = list[list[ClassScore]]


@dataclass(frozen=True, slots=True)
class ClassifyJob:
    images: Sequence[Image]
    top_k: int


class ClassificationRuntime(BatchingRuntime[ClassificationSettings, ClassifyJob, Result]):
    """Classify requests, batched by image across callers; a request takes one slot per image."""

    output_unit = "images"

    def __init__(self, name: str, instances: Sequence[Instance], settings: ClassificationSettings) -> None:
        super().__init__(name, instances, settings)
        first = self.first_model()
        self.input_shape: tuple[int, ...] = tuple(first.input_shape)
        self.num_classes = len(first.labels)

    def info(self) -> pb.ImageClassificationInfo:
        return pb.ImageClassificationInfo(
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            max_images_per_request=self.settings.max_images_per_request,
        )

    def validate(self, images: Sequence[Image], top_k: int) -> int:
        """Check what can be checked on the event loop; return the effective top_k."""
        if not images:
            raise InvalidInputError("images is empty: send at least one image")
        limit = self.settings.max_images_per_request
        if len(images) > limit:
            raise InvalidInputError(f"{len(images)} images in one request; this model takes at most {limit}")
        default = min(5, self.num_classes)
        if top_k < 0 or top_k > self.num_classes:
            raise InvalidInputError(
                f"top_k must be between 1 and {self.num_classes} (0 means {default}: min(5, classes)), got {top_k}"
            )
        for i, image in enumerate(images):
            if isinstance(image, RawTensor):
                self._check_tensor(i, image)
            elif not image.data:
                raise InvalidInputError(f"image {i} is empty: send the bytes of a JPEG, PNG, WebP or BMP file")
            else:
                self._check_size(i, image.data)
        return top_k or default

    def _check_size(self, i: int, data: bytes) -> None:
        """Refuse an image whose header announces more pixels than allowed, before decoding it.
        A format Pillow does not know is left to the model's own ``preprocess``."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as header:  # reads the header only
                width, height = header.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            return
        limit = self.settings.max_image_pixels
        if width * height > limit:
            raise InvalidInputError(
                f"image {i} is {width} x {height} = {width * height:,} pixels; model {self.name!r} takes at most "
                f"{limit:,} (max_image_pixels)"
            )

    def _check_tensor(self, i: int, t: RawTensor) -> None:
        if t.dtype != "float32":
            raise InvalidInputError(f"image {i}: tensor dtype must be FLOAT32, got {t.dtype.upper()}")
        if tuple(t.shape) != self.input_shape:
            raise InvalidInputError(
                f"image {i}: tensor shape must be {list(self.input_shape)} (channels, height, width), "
                f"got {_shape_text(t.shape)}"
            )
        expected = math.prod(t.shape) * _ITEMSIZE[t.dtype]
        if len(t.data) != expected:
            raise InvalidInputError(
                f"image {i}: tensor data has {len(t.data)} bytes; shape {_shape_text(t.shape)} FLOAT32 needs {expected}"
            )
        if not np.isfinite(np.frombuffer(t.data, dtype="<f4")).all():
            raise InvalidInputError(f"image {i}: the tensor holds NaN or infinite values")

    async def classify(self, images: Sequence[Image], top_k: int, deadline: float | None = None) -> Result:
        """Classify ``images``; the result is one top-k list per image."""
        k = self.validate(images, top_k)
        return await self.submit(ClassifyJob(images, k), len(images), deadline)

    def run_batch(self, model: ImageClassifier, jobs: Sequence[ClassifyJob]) -> list[Result | BaseException]:
        """On the instance's thread: preprocess each request (failing only it), classify all together."""
        out: list[Result | BaseException] = []
        inputs: list[object] = []
        spans: list[tuple[int, int, int] | None] = []
        for job in jobs:
            try:
                xs = [_preprocess(model, i, image) for i, image in enumerate(job.images)]
            except ModelplexError as e:
                out.append(e)
                spans.append(None)
                continue
            except Exception as e:
                out.append(inference_error(self.name, e))
                spans.append(None)
                continue
            spans.append((len(inputs), len(xs), job.top_k))
            inputs.extend(xs)
            out.append([])
        if not inputs:
            return out
        top_k = max(s[2] for s in spans if s is not None)
        scores: list[list[ClassScore]] = []
        step = self.settings.max_batch_size
        for start in range(0, len(inputs), step):
            chunk = inputs[start : start + step]
            got = model.classify(chunk, top_k)
            if len(got) != len(chunk):
                raise RuntimeError(f"classify() returned {len(got)} results for {len(chunk)} inputs")
            scores.extend(got)
        for j, span in enumerate(spans):
            if span is not None:
                start, n, k = span
                out[j] = [s[:k] for s in scores[start : start + n]]
        return out


def _preprocess(model: ImageClassifier, index: int, image: Image) -> object:
    try:
        return model.preprocess(image)
    except InvalidInputError as e:
        raise InvalidInputError(f"image {index}: {e}") from None


def _shape_text(shape: Sequence[int]) -> str:
    """A client's shape, short enough to repeat in an error message."""
    return str(list(shape)) if len(shape) <= 8 else f"{len(shape)} dimensions"

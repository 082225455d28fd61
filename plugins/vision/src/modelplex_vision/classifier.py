"""The image classifier a torchvision spec's factory builds."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from itertools import chain

import torch
from torch import nn
from torchvision.models import get_weight

from modelplex import (
    ClassScore,
    EncodedImage,
    ImageClassifier,
    InvalidInputError,
    LoadContext,
    ModelLoadError,
    ModelNotReadyError,
    RawTensor,
    WeightsSource,
)
from modelplex_vision.catalog import Architecture
from modelplex_vision.images import decode_image
from modelplex_vision.settings import VisionSettings
from modelplex_vision.weights import build_from_checkpoint, build_pretrained, build_random

__all__ = ["TorchvisionClassifier"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TorchvisionClassifier(ImageClassifier):
    """One instance of a torchvision classifier on one device.

    Construction only checks the settings and works out the labels, so a bad config
    fails before any weights are read; ``load()`` builds the module on the device.
    ``num_classes`` is the number of outputs of its head.
    """

    def __init__(self, arch: Architecture, ctx: LoadContext) -> None:
        settings = ctx.settings
        if not isinstance(settings, VisionSettings):
            settings = VisionSettings.model_validate(settings.model_dump())
        if settings.dtype != "float32" and not ctx.device.startswith("cuda"):
            raise ModelLoadError(
                f"dtype {settings.dtype} needs a CUDA device, and {ctx.model_name!r} is on {ctx.device}; "
                'use dtype = "float32" there'
            )
        self._arch = arch
        self._ctx = ctx
        self._settings = settings
        self._device = torch.device(ctx.device)
        self._dtype = _DTYPES[settings.dtype]
        self._weights = get_weight(ctx.variant.weights)
        # The variant's own preset, so preprocessing is exactly torchvision's.
        self._transforms = self._weights.transforms()
        self._model: nn.Module | None = None

        categories: list[str] | None = self._weights.meta["categories"]
        self.num_classes = _num_classes(settings, categories)
        if settings.labels is not None:
            self.labels: Sequence[str] = tuple(settings.labels)
        elif categories is not None and len(categories) == self.num_classes:
            self.labels = tuple(categories)
        else:
            self.labels = tuple(f"class_{i}" for i in range(self.num_classes))
        crop = self._transforms.crop_size[0]
        self.input_shape: tuple[int, ...] = (3, crop, crop)
        if ctx.weights.source is WeightsSource.PRETRAINED:
            self._check_pretrained_usable(categories)

    def _check_pretrained_usable(self, categories: list[str] | None) -> None:
        if categories is None:
            raise ModelLoadError(
                f"{self._weights} has no trained classifier head (torchvision ships only its feature "
                "extractor), so it cannot classify as is: give a checkpoint fine-tuned from it as the "
                "model's weights, or choose another variant"
            )
        if self.num_classes != len(categories):
            raise ModelLoadError(
                f"{self._weights} classifies {len(categories)} classes, not {self.num_classes}: a head "
                "with another number of classes needs a checkpoint as the model's weights"
            )

    def load(self) -> None:
        """Build the module from the chosen weights and move it to the device, in eval mode."""
        weights = self._ctx.weights
        if weights.source is WeightsSource.PRETRAINED:
            model = build_pretrained(self._arch, self._weights, allow_download=weights.allow_download)
        elif weights.source is WeightsSource.CHECKPOINT:
            if weights.path is None:
                raise ModelLoadError("checkpoint weights were chosen but no path was given")
            model = build_from_checkpoint(self._arch, weights.path, self.num_classes)
        else:
            model = build_random(self._arch, self.num_classes)
        model.eval().requires_grad_(False)
        model.to(device=self._device, dtype=self._dtype)
        if self._settings.channels_last:
            model.to(memory_format=torch.channels_last)
        self._model = model

    def warmup(self) -> None:
        """Classify one all-zero image."""
        self.classify([torch.zeros(self.input_shape)], top_k=1)

    def unload(self) -> None:
        """Drop the module and return its memory to the device."""
        self._model = None
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def memory_bytes(self) -> int:
        """Bytes of the module's parameters and buffers."""
        if self._model is None:
            return 0
        tensors = chain(self._model.parameters(), self._model.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    def preprocess(self, image: EncodedImage | RawTensor) -> torch.Tensor:
        """An encoded image, decoded and transformed by the variant's preset (resize, center
        crop, normalize), or a raw float32 tensor of ``input_shape`` as is."""
        if isinstance(image, RawTensor):
            if tuple(image.shape) != self.input_shape:
                raise InvalidInputError(f"tensor shape {image.shape} is not the model's {self.input_shape}")
            return torch.frombuffer(bytearray(image.data), dtype=torch.float32).reshape(image.shape)
        tensor: torch.Tensor = self._transforms(decode_image(image.data))
        return tensor

    def classify(self, inputs: Sequence[torch.Tensor], top_k: int) -> list[list[ClassScore]]:
        """The ``top_k`` classes of each input, best first, with softmax scores."""
        if self._model is None:
            raise ModelNotReadyError(f"{self._ctx.model_name!r} is not loaded")
        if top_k < 1:
            raise InvalidInputError(f"top_k must be at least 1, not {top_k}")
        memory_format = torch.channels_last if self._settings.channels_last else torch.contiguous_format
        batch = torch.stack(list(inputs)).to(self._device, self._dtype, memory_format=memory_format)
        with torch.inference_mode():
            probabilities = torch.softmax(self._model(batch).float(), dim=1)
            scores, indices = probabilities.topk(min(top_k, self.num_classes), dim=1)
        return [
            [ClassScore(index=i, label=self.labels[i], score=s) for i, s in zip(row_i, row_s, strict=True)]
            for row_i, row_s in zip(indices.tolist(), scores.tolist(), strict=True)
        ]


def _num_classes(settings: VisionSettings, categories: list[str] | None) -> int:
    if settings.num_classes is not None:
        return settings.num_classes
    if settings.labels is not None:
        return len(settings.labels)
    # A variant without a trained head (VGG16 features) keeps torchvision's default head.
    return len(categories) if categories is not None else 1000

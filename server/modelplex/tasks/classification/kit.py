"""A ready image classifier for a PyTorch module: the plugin writes only what is its own.

    from modelplex import ImagePreprocessing, hookimpl
    from modelplex.kit import torch_classifier

    def build(ctx):                      # called on the instance's thread; import torch here
        from my_models import TinyNet
        return TinyNet(num_classes=3)    # random init; the kit loads the checkpoint

    @hookimpl
    def register_models(register):
        register(torch_classifier("tiny-net", build, labels=["cat", "dog", "fox"],
                                  preprocessing=ImagePreprocessing(crop_size=32, resize_size=36)))

``build`` returns the module with random weights, or with its pretrained weights when the
config asks for them (``weights = "pretrained"``; then set ``module.pretrained = True``,
else the kit refuses: it never serves random weights in place of pretrained ones).
The kit moves the module to the instance's device, puts it in eval mode, loads a
checkpoint (a state_dict in ``.safetensors``, or ``.pt``/``.pth`` read with
``torch.load(weights_only=True)``) when the config names one, decodes and preprocesses
images (resize the shorter side, centre-crop, normalise), runs batches under
``torch.inference_mode()``, takes the softmax top-k, and frees the module on unload.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from modelplex.errors import InvalidInputError, ModelLoadError, WeightsNotFoundError
from modelplex.specs import LoadContext, ModelSpec, NoSettings, Variant, WeightsSource
from modelplex.tasks.base import TorchModule
from modelplex.tasks.classification.interface import (
    ClassificationMeta,
    ClassScore,
    EncodedImage,
    ImageClassifier,
    ImagePreprocessing,
    RawTensor,
)

__all__ = ["TorchClassifier", "torch_classifier"]

ModuleBuilder = Callable[[LoadContext[Any]], Any]
"""Builds the ``torch.nn.Module`` (with random or pretrained weights) for a context."""


class TorchClassifier(TorchModule, ImageClassifier):
    """An :class:`ImageClassifier` over a ``torch.nn.Module`` that maps a (N, C, H, W)
    float batch to (N, classes) logits."""

    def __init__(
        self, ctx: LoadContext[Any], build: ModuleBuilder, labels: Sequence[str], preprocessing: ImagePreprocessing
    ) -> None:
        self.ctx = ctx
        self._build = build
        self.labels = tuple(labels)
        self.pre = preprocessing
        self.input_shape = (3, preprocessing.crop_size, preprocessing.crop_size)
        self.module: Any = None

    def load(self) -> None:
        import torch

        module = self._build(self.ctx)
        weights = self.ctx.weights
        if weights.source is WeightsSource.CHECKPOINT:
            assert weights.path is not None
            module.load_state_dict(_read_state_dict(weights.path))
        elif weights.source is WeightsSource.PRETRAINED and not getattr(module, "pretrained", False):
            raise WeightsNotFoundError(
                f"spec {self.ctx.spec.name!r} has no pretrained weights of its own: give a checkpoint path "
                '(weights = "/path/model.safetensors") or weights = "random"'
            )
        self.module = module.to(torch.device(self.ctx.device)).eval()

    def preprocess(self, image: EncodedImage | RawTensor) -> Any:
        import torch

        if isinstance(image, RawTensor):
            return torch.frombuffer(bytearray(image.data), dtype=torch.float32).reshape(image.shape)
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            opened = Image.open(io.BytesIO(image.data))
            opened.draft("RGB", (self.pre.resize_size, self.pre.resize_size))  # JPEG: decode at reduced size
            pil: Image.Image = ImageOps.exif_transpose(opened).convert("RGB")  # camera photos: upright
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise InvalidInputError(f"cannot decode image: {e}") from None
        w, h = pil.size
        scale = self.pre.resize_size / min(w, h)
        resample = Image.Resampling.BICUBIC if self.pre.interpolation == "bicubic" else Image.Resampling.BILINEAR
        pil = pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)
        c = self.pre.crop_size
        left, top = (pil.width - c) // 2, (pil.height - c) // 2
        pil = pil.crop((left, top, left + c, top + c))
        x = torch.frombuffer(bytearray(pil.tobytes()), dtype=torch.uint8).reshape(c, c, 3).permute(2, 0, 1)
        mean = torch.tensor(self.pre.mean).view(3, 1, 1)
        std = torch.tensor(self.pre.std).view(3, 1, 1)
        return (x.float() / 255 - mean) / std

    def classify(self, inputs: Sequence[Any], top_k: int) -> list[list[ClassScore]]:
        import torch

        with torch.inference_mode():
            logits = self.module(torch.stack(list(inputs)).to(self.ctx.device))
            scores, indices = logits.float().softmax(dim=1).topk(top_k, dim=1)
        return [
            [ClassScore(i, self.labels[i], s) for s, i in zip(row_s, row_i, strict=True)]
            for row_s, row_i in zip(scores.tolist(), indices.tolist(), strict=True)
        ]


def _read_state_dict(path: Any) -> dict[str, Any]:
    import torch

    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot read the checkpoint {path}: {type(e).__name__}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"the checkpoint {path} holds no state_dict")
    return state


def torch_classifier(
    name: str,
    build: ModuleBuilder,
    *,
    labels: Sequence[str],
    preprocessing: ImagePreprocessing,
    settings: type[BaseModel] = NoSettings,
    description: str = "",
) -> ModelSpec:
    """A spec whose models are :class:`TorchClassifier` over the module ``build(ctx)`` returns."""
    meta = ClassificationMeta(
        num_classes=len(labels),
        input_shape=(3, preprocessing.crop_size, preprocessing.crop_size),
        preprocessing=preprocessing,
    )
    return ModelSpec(
        name=name,
        task="image_classification",
        factory=lambda ctx: TorchClassifier(ctx, build, labels, preprocessing),
        variants=(Variant("default", weights="", meta=meta),),
        settings=settings,
        description=description,
    )

"""The detector a torchvision spec's factory builds: one instance on one device.

Every path goes through torchvision's own builder, so the module is the one
``torchvision.models.detection.<builder>(weights=...)`` gives, including its own
transform (resize and normalisation inside the model), and its boxes come back in
pixels of the image as it was given.
"""

from __future__ import annotations

import gc
import io
import os
import pickle
from collections.abc import Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from modelplex import (
    InvalidInputError,
    LoadContext,
    ModelLoadError,
    ModelNotReadyError,
    WeightsNotFoundError,
    WeightsSource,
)
from PIL import Image, ImageOps
from torch import nn
from torchvision.models import WeightsEnum, get_model_builder, get_weight

from modelplex_detection.interface import BoundingBox, Detection, ObjectDetector
from modelplex_detection.plugin import Architecture, DetectorSettings

__all__ = ["TorchvisionDetector", "hub_cache_file", "read_state_dict"]

_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
_ACCEPTED = "accepted formats: JPEG, PNG, WebP, BMP"


class TorchvisionDetector(ObjectDetector):
    """A torchvision detection model. Construction only works out the labels, so a bad
    config fails before any weights are read; ``load()`` builds the module on the device."""

    def __init__(self, arch: Architecture, ctx: LoadContext[DetectorSettings]) -> None:
        settings = ctx.settings
        if not isinstance(settings, DetectorSettings):  # another plugin's spec reusing this class
            settings = DetectorSettings.model_validate(settings.model_dump())
        self._arch = arch
        self._ctx = ctx
        self._device = torch.device(ctx.device)
        self._weights: WeightsEnum = get_weight(ctx.variant.weights)
        # The weights' own preset: PIL image to a float tensor in [0, 1]; the model does the rest.
        self._transform = self._weights.transforms()
        coco: list[str] = list(self._weights.meta["categories"])
        self.labels: Sequence[str] = settings.labels or tuple(coco)
        if ctx.weights.source is WeightsSource.PRETRAINED and len(self.labels) != len(coco):
            raise ModelLoadError(
                f"{self._weights} detects COCO's {len(coco)} classes, not {len(self.labels)}: labels of "
                "another length need a fine-tuned checkpoint as the model's weights"
            )
        self._model: nn.Module | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def load(self) -> None:
        """Build the module from the chosen weights and move it to the device, in eval mode."""
        weights = self._ctx.weights
        if weights.source is WeightsSource.PRETRAINED:
            model = self._build_pretrained(allow_download=weights.allow_download)
        elif weights.source is WeightsSource.CHECKPOINT:
            if weights.path is None:
                raise ModelLoadError("checkpoint weights were chosen but no path was given")
            model = self._build_from_checkpoint(weights.path)
        else:
            # The same random weights on every call and instance: seed 0, without
            # disturbing the process's own random state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = self._build_untrained()
        model.eval().requires_grad_(False)
        self._model = model.to(self._device)
        self.max_detections, self.min_score = _limits(model)

    def warmup(self) -> None:
        """Detect in one grey image, so that the first request does not pay for the first forward pass."""
        self.detect([torch.full((3, 320, 320), 0.5)], score_threshold=1.0, max_detections=1)

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
        return sum(t.numel() * t.element_size() for t in chain(self._model.parameters(), self._model.buffers()))

    # -- inference --------------------------------------------------------------------------

    def preprocess(self, image: bytes) -> torch.Tensor:
        """Decode a JPEG, PNG, WebP or BMP file, turned upright by its EXIF orientation,
        into a float RGB tensor (3, height, width) in [0, 1]: the model's input."""
        try:
            with Image.open(io.BytesIO(image), formats=_FORMATS) as decoded:
                rgb = ImageOps.exif_transpose(decoded).convert("RGB")
        except Exception as e:  # PIL's decoders raise many types on malformed data
            raise InvalidInputError(f"cannot decode image: {e}; {_ACCEPTED}") from e
        tensor: torch.Tensor = self._transform(rgb)
        return tensor

    def detect(
        self, inputs: Sequence[torch.Tensor], score_threshold: float, max_detections: int
    ) -> list[list[Detection]]:
        """The detections of each input scoring at least ``score_threshold``, best first."""
        if self._model is None:
            raise ModelNotReadyError(f"{self._ctx.model_name!r} is not loaded")
        # The detection models take a list of images of any sizes, and batch them themselves.
        with torch.inference_mode():
            outputs = self._model([x.to(self._device) for x in inputs])
        return [self._detections(out, score_threshold, max_detections) for out in outputs]

    def _detections(self, out: Mapping[str, torch.Tensor], threshold: float, most: int) -> list[Detection]:
        scores = out["scores"].float().cpu()
        # torchvision already sorts by score (its NMS does); sorting again keeps the contract
        # whatever the model's post-processing.
        order = torch.argsort(scores, descending=True, stable=True)
        order = order[scores[order] >= threshold][:most]
        boxes = out["boxes"].float().cpu()[order].tolist()
        labels = out["labels"].cpu()[order].tolist()
        return [
            Detection(BoundingBox(*box), int(label), self._label(int(label)), float(score))
            for box, label, score in zip(boxes, labels, scores[order].tolist(), strict=True)
        ]

    def _label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class_{index}"

    # -- building ---------------------------------------------------------------------------

    def _build_untrained(self) -> nn.Module:
        # weights_backbone=None too: no ImageNet backbone file is read. The module has the
        # layout of the pretrained one, BatchNorm in place of FrozenBatchNorm (the same in eval).
        builder = get_model_builder(self._arch.builder)
        model: nn.Module = builder(weights=None, weights_backbone=None, num_classes=len(self.labels))
        return model

    def _build_pretrained(self, *, allow_download: bool) -> nn.Module:
        cached = hub_cache_file(self._weights)
        if not cached.is_file() and not allow_download:
            raise WeightsNotFoundError(
                f"pretrained weights {self._weights} are not in the local cache: {cached} does not exist and "
                f"downloads are off. Either download {self._weights.url} on a networked machine and copy it "
                f"to {cached} (torch.hub's cache: $TORCH_HOME/hub/checkpoints), allow downloads for this "
                'model, give a checkpoint path as its weights, or set weights = "random" to serve untrained weights.'
            )
        try:
            model: nn.Module = get_model_builder(self._arch.builder)(weights=self._weights, progress=False)
        except Exception as e:  # a bad cache file or a failed download surfaces as many types
            if cached.is_file():
                raise ModelLoadError(
                    f"cannot read pretrained weights {self._weights} from {cached}: {e}. The file is damaged or "
                    f"not torchvision's: replace it with {self._weights.url}, or delete it to download it again."
                ) from e
            raise ModelLoadError(f"cannot download {self._weights} from {self._weights.url}: {e}") from e
        return model

    def _build_from_checkpoint(self, path: Path) -> nn.Module:
        state_dict = read_state_dict(path)
        model = self._build_untrained()
        fits = f"checkpoint {path} does not fit torchvision.models.detection.{self._arch.builder}"
        fits += f"(num_classes={len(self.labels)})"
        hint = "If it was fine-tuned on other classes, list them (background first) as the model's settings.labels."
        try:
            result = model.load_state_dict(state_dict, strict=False)
        except RuntimeError as e:  # tensors of other shapes, even with strict=False
            raise ModelLoadError(f"{fits}: {e}. {hint}") from e
        # torchvision's own files come from FrozenBatchNorm modules, which keep no batch
        # counter; that counter is all a checkpoint may lack (or carry in excess).
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ModelLoadError(f"{fits}: {_keys('missing', missing)}{_keys('unexpected', unexpected)}{hint}")
        return model


def _limits(model: nn.Module) -> tuple[int, float]:
    """The module's detections per image and score floor (the RoI heads' for Faster R-CNN)."""
    owner: Any = getattr(model, "roi_heads", model)  # plain attributes, untyped by nn.Module
    return int(owner.detections_per_img), float(owner.score_thresh)


def _keys(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    return f"{len(keys)} {what} keys ({shown}). "


def hub_cache_file(weights: WeightsEnum) -> Path:
    """Where torch.hub keeps (or would download) the file of ``weights``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a ``.safetensors`` file or a ``torch.save`` file (bare, or under a
    ``"state_dict"`` or ``"model"`` key), on the CPU. Only tensors are unpickled."""
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise WeightsNotFoundError(f"checkpoint {path} {what}; give the path of a .safetensors or .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # only needed for that format

            loaded: object = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelLoadError(
            f"checkpoint {path} holds more than tensors, and only plain state dicts are loaded "
            f"(torch.load(weights_only=True)): {e}. Re-save just the weights: torch.save(model.state_dict(), path)"
        ) from e
    except Exception as e:  # torch.load and safetensors raise many types on a bad file
        raise ModelLoadError(f"cannot read checkpoint {path}: {e}") from e
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ModelLoadError(f'checkpoint {path} is not a state dict (names to tensors, bare or under "state_dict")')
    return dict(loaded)

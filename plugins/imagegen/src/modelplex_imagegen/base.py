"""What every generator of this plugin shares: weights choice, device, dtype, unload."""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from modelplex.errors import ModelLoadError, WeightsNotFoundError
from modelplex.specs import LoadContext, WeightsSource
from modelplex.tasks.base import TorchModule
from modelplex.tasks.image_generation import ImageGenerator
from modelplex_imagegen.settings import GeneratorSettings

__all__ = ["RANDOM_WEIGHTS_SEED", "TorchImageGenerator", "imagenet_classes", "seeded"]

RANDOM_WEIGHTS_SEED = 0
"""Random weights are drawn from this seed, so that every instance of a model (and every
load) has the same ones and a seed gives the same image on each."""


@contextlib.contextmanager
def seeded(seed: int = RANDOM_WEIGHTS_SEED) -> Iterator[None]:
    """Draw random initialisations from ``seed`` without touching the global RNG's state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names, by index, shipped with the plugin (torchvision's list)."""
    text = resources.files("modelplex_imagegen").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


class TorchImageGenerator(TorchModule, ImageGenerator):
    """A generator over a ``torch.nn.Module``; subclasses build the module and run it."""

    def __init__(self, ctx: LoadContext[Any]) -> None:
        self.ctx = ctx
        self.module: Any = None
        settings: GeneratorSettings = ctx.settings
        if settings.dtype != "float32" and not ctx.device.startswith("cuda"):
            raise ModelLoadError(
                f"dtype {settings.dtype} needs a CUDA device, and {ctx.model_name!r} is on {ctx.device}; "
                'use dtype = "float32" there'
            )

    @property
    def dtype(self) -> Any:
        import torch

        return getattr(torch, self.ctx.settings.dtype)

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint path, or None for random weights; pretrained weights are refused:
        none of these families has a download of its own."""
        weights = self.ctx.weights
        if weights.source is WeightsSource.CHECKPOINT:
            assert weights.path is not None
            return weights.path
        if weights.source is WeightsSource.RANDOM:
            return None
        raise WeightsNotFoundError(
            f'spec {self.ctx.spec.name!r} has no download of its own: give weights = "/path/to/{self.weights_hint}" '
            'or weights = "random"'
        )

    weights_hint = "checkpoint.pt"
    """What ``weights`` should name, shown when pretrained weights are asked for."""

    def load(self) -> None:
        import torch

        module = self.build()
        self.module = module.to(device=torch.device(self.ctx.device), dtype=self.dtype).eval()
        self.after_load()

    @abstractmethod
    def build(self) -> Any:
        """The module with its weights (random or the checkpoint's), on the CPU; sets
        ``latent_size``, ``image_shape`` and, when conditional, ``labels``."""

    def after_load(self) -> None:  # noqa: B027 - optional hook
        """Runs once the module is on its device."""

    def warmup(self) -> None:
        import torch

        from modelplex.tasks.image_generation import ImageInput

        g = torch.Generator().manual_seed(0)
        label = 0 if self.labels else None
        with torch.inference_mode():
            self.generate(
                [ImageInput(self.sample_latent(g, self.default_truncation), label, self.default_truncation, g)]
            )

    def to_device(self, x: Any) -> Any:
        """A CPU float32 tensor on the module's device and dtype."""
        return x.to(device=self.ctx.device, dtype=self.dtype)

    @staticmethod
    def from_tanh(images: Any) -> Any:
        """Images in [-1, 1] (a GAN's tanh) -> float32 CPU in [0, 1]."""
        return ((images.float() + 1) / 2).clamp(0, 1).cpu()

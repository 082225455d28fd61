"""Image generation: the interface a model implements, its value types and its variant meta.

The runtime seeds every image on its own: for image seed ``s`` it makes
``g = torch.Generator().manual_seed(s)`` (on the CPU, so that the numbers do not depend on
the device) and, in this order, draws the latent with ``model.sample_latent(g, truncation)``
(always, so that the draws after it do not depend on it; a latent the request gave, or an
interpolation frame's, then replaces it), draws the class of a class-conditional model with
``torch.randint(num_classes, (1,), generator=g)`` (unless the request named one), and hands
``g`` to :meth:`ImageGenerator.generate`, which draws any per-image noise from it. So the
same seed gives the same image alone and inside any batch (up to the rounding of batched
kernels; see the task key ``pad_batches``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelplex.specs import VariantMeta
from modelplex.tasks.base import TaskModel

if TYPE_CHECKING:
    import torch

__all__ = ["ImageGenerationMeta", "ImageGenerator", "ImageInput", "truncated_normal"]


@dataclass(frozen=True)
class ImageGenerationMeta(VariantMeta):
    """What an image generator's variant says about itself."""

    family: str = ""
    """``"dcgan"``, ``"biggan"``, ``"stylegan2"``, ``"vae"``, ..."""
    image_shape: tuple[int, int, int] | None = None
    """(channels, height, width) of one image, when the variant fixes it."""
    latent_size: int | None = None
    """Length of one latent vector, when the variant fixes it."""
    num_classes: int = 0
    """Classes of a class-conditional model; 0 for an unconditional one."""


@dataclass(frozen=True, slots=True)
class ImageInput:
    """One image to generate, as :meth:`ImageGenerator.generate` receives it."""

    latent: Any
    """A float32 CPU tensor of shape ``(latent_size,)``."""
    class_index: int | None
    """The class, for a class-conditional model; None otherwise."""
    truncation: float
    """In (0, 1]; the model's ``default_truncation`` when the request set none."""
    generator: Any
    """The image's own ``torch.Generator`` (CPU), already past its latent and class draws:
    draw any per-image noise from it, on the CPU, and move it to the device."""


def truncated_normal(size: int, generator: torch.Generator, truncation: float) -> torch.Tensor:
    """``truncation`` times a standard normal truncated to [-2, 2] (BigGAN's
    ``truncated_noise_sample``), drawn by inverting the normal CDF of a uniform sample."""
    import torch

    low = torch.special.ndtr(torch.tensor(-2.0, dtype=torch.float64))
    u = torch.rand(size, generator=generator, dtype=torch.float64)
    values = torch.special.ndtri(low + u * (1 - 2 * low))
    return (values * truncation).to(torch.float32)


class ImageGenerator(TaskModel):
    """A generator of images from latents. The server batches requests dynamically and calls
    :meth:`generate` on the instance's thread with up to ``max_batch_size`` images at once."""

    latent_size: int
    """Length of one latent vector."""
    image_shape: tuple[int, int, int]
    """(channels, height, width) of the images :meth:`generate` returns."""
    labels: Sequence[str] = ()
    """Class names by index, for a class-conditional model; empty for an unconditional one."""
    default_truncation: float = 1.0
    """The truncation used when a request sets none, in (0, 1]."""
    family: str = ""
    """The model family, reported in ModelInfo (``"dcgan"``, ``"stylegan2"``, ...)."""

    def sample_latent(self, generator: torch.Generator, truncation: float) -> torch.Tensor:
        """One latent of shape ``(latent_size,)`` drawn from ``generator`` (float32, CPU).

        The default suits a model with a standard normal prior: a plain normal at
        truncation 1, else :func:`truncated_normal`. Override it for another prior."""
        import torch

        if truncation >= 1.0:
            return torch.randn(self.latent_size, generator=generator)
        return truncated_normal(self.latent_size, generator, truncation)

    @abstractmethod
    def generate(self, inputs: Sequence[ImageInput]) -> torch.Tensor:
        """Generate one image per input: a float32 CPU tensor ``(len(inputs), *image_shape)``
        with values in [0, 1]. The inputs of one call share one truncation, and there are at
        most ``max_batch_size`` of them."""

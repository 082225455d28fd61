"""The value types of image-generation requests, and interpolation between latents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelplex.tasks.image_generation.encode import ImageFormat, OutputOptions
from modelplex.tasks.image_generation.interface import ImageGenerator

__all__ = [
    "SEED_MODULUS",
    "Endpoint",
    "GenerateParams",
    "GeneratedImage",
    "ImageJob",
    "ImageOrder",
    "InterpolateParams",
    "interpolated_latent",
]

SEED_MODULUS = 2**64


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of an interpolation: a seed (its sampled latent) or a latent."""

    seed: int | None = None
    latent: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class GenerateParams:
    """A Generate request, as the servicer hands it over."""

    num_images: int
    seed: int | None = None
    class_index: int | None = None
    class_name: str | None = None
    truncation: float | None = None
    latents: Sequence[float] = ()
    output: OutputOptions = OutputOptions()


@dataclass(frozen=True, slots=True)
class InterpolateParams:
    """An Interpolate request, as the servicer hands it over."""

    num_images: int
    start: Endpoint
    end: Endpoint
    method: str = "slerp"
    seed: int | None = None
    class_index: int | None = None
    class_name: str | None = None
    truncation: float | None = None
    output: OutputOptions = OutputOptions()


@dataclass(frozen=True, slots=True)
class ImageOrder:
    """One image to make: its generator's seed, and its latent when not sampled from it."""

    index: int
    seed: int
    latent: tuple[float, ...] | None = None
    t: float | None = None
    """Where an interpolation frame lies (its latent is computed on the thread)."""


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One queued piece of a request: up to ``max_batch_size`` images."""

    images: tuple[ImageOrder, ...]
    class_index: int | None
    truncation: float
    output: OutputOptions
    interpolation: tuple[Endpoint, Endpoint, str] | None = None


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One finished image."""

    index: int
    seed: int
    class_index: int | None
    class_name: str
    format: ImageFormat
    channels: int
    height: int
    width: int
    data: bytes
    t: float | None = None


def _endpoint_latent(model: ImageGenerator, end: Endpoint, truncation: float) -> Any:
    import torch

    if end.latent is not None:
        return torch.tensor(end.latent, dtype=torch.float32)
    assert end.seed is not None
    return model.sample_latent(torch.Generator().manual_seed(end.seed), truncation)


def interpolated_latent(model: ImageGenerator, job: ImageJob, t: float) -> Any:
    """On the instance's thread: the latent of the frame at ``t`` of ``job``'s interpolation."""
    import torch

    assert job.interpolation is not None
    start, end, method = job.interpolation
    a = _endpoint_latent(model, start, job.truncation)
    b = _endpoint_latent(model, end, job.truncation)
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    if t <= 0.0:  # the endpoints exactly, whatever the rounding of the formula
        return a
    if t >= 1.0:
        return b
    a64, b64 = a.double().flatten(), b.double().flatten()
    if method == "slerp":
        cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
        omega = torch.arccos(cos.clamp(-1.0, 1.0))
        if float(torch.sin(omega)) > 1e-6:  # else (almost) parallel: the line is the arc
            s = torch.sin(omega)
            return ((torch.sin((1 - t) * omega) / s) * a64 + (torch.sin(t * omega) / s) * b64).float()
    return ((1 - t) * a64 + t * b64).float()

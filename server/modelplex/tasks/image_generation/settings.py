"""The serving settings of an image-generation model."""

from __future__ import annotations

from pydantic import Field

from modelplex.server.runtimes.batched import BatchingSettings

__all__ = ["ImageGenerationSettings"]


class ImageGenerationSettings(BatchingSettings):
    """Keys of an image generator's ``[[models]]`` entry (and of ``ImageGenerationSettings``
    in LoadModel), besides the batching ones. ``max_batch_size`` counts images: a request
    is queued in pieces of at most that many images, each streamed when its batch is done."""

    max_images_per_request: int = Field(default=64, ge=1, le=10_000)
    """Images one Generate or Interpolate request may ask for; more is INVALID_ARGUMENT."""
    pad_batches: bool = False
    """Pad every forward pass to ``max_batch_size`` images. A batch of another size runs other
    kernels, which round differently (about 1e-6), so without it an image may differ in its last
    bits from the same seed's image in another batch; with it they are bit-identical, at the
    cost of computing full batches for lone requests."""

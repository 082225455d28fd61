"""The serving settings of an image-classification model."""

from __future__ import annotations

from pydantic import Field

from modelplex.server.runtimes.batched import BatchingSettings

__all__ = ["ClassificationSettings"]


class ClassificationSettings(BatchingSettings):
    """Keys of a classifier's ``[[models]]`` entry (and of ``ImageClassificationSettings``
    in LoadModel), besides the batching ones."""

    max_images_per_request: int = Field(default=64, ge=1, le=100_000)
    """Images one Classify request may carry; more is INVALID_ARGUMENT."""
    max_image_pixels: int = Field(default=40_000_000, ge=1, le=1_000_000_000)
    """Width x height an encoded image may have, read from its header before anything is
    decoded; more is INVALID_ARGUMENT (a small PNG can hold a huge image)."""

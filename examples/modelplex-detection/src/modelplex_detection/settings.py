"""The serving settings of an object-detection model."""

from __future__ import annotations

from modelplex.runtime import BatchingSettings
from pydantic import Field

__all__ = ["DetectionSettings"]


class DetectionSettings(BatchingSettings):
    """Keys of a detector's ``[[models]]`` entry (and of ``ObjectDetectionSettings`` in
    LoadModel), besides the batching ones. A batch slot is one image."""

    max_images_per_request: int = Field(default=16, ge=1, le=10_000)
    """Images one Detect request may carry; more is INVALID_ARGUMENT."""

"""Registers `dominant-color`: which of red, green and blue dominates an image.

Registration imports nothing heavy: the model module (and torch) is imported
by the factory, when an instance is loaded.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from modelplex import LoadContext, ModelSpec, Task, TaskModel, Variant, VariantMeta, hookimpl


class ColorSettings(BaseModel):
    """Settings of the dominant-color model."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(32, ge=1, le=1024)
    """Images are resized to size x size before averaging."""
    sharpness: float = Field(10.0, gt=0)
    """Scales the channel means before the softmax: higher is more confident."""


def _factory(ctx: LoadContext) -> TaskModel:
    from modelplex_example.model import DominantColor

    return DominantColor(ctx)


@hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register(
        ModelSpec(
            name="dominant-color",
            task=Task.IMAGE_CLASSIFICATION,
            factory=_factory,
            variants=(Variant("rgb", weights="", meta=VariantMeta(num_classes=3), description="red, green, blue"),),
            settings=ColorSettings,
            description="Which of red, green and blue dominates the image (no weights: a fixed function).",
        )
    )

"""The settings every torchvision classifier spec takes."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["VisionSettings"]


class VisionSettings(BaseModel):
    """Settings of a torchvision image classifier (the ``settings`` table of a model's config)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    num_classes: int | None = Field(default=None, ge=1, le=100_000)
    """Outputs of the classifier head, for a checkpoint fine-tuned with another head than the
    variant's (1000 ImageNet classes). Labels are then ``class_0``, ``class_1``, ... unless
    ``labels`` names them. Defaults to ``len(labels)`` if given, else the variant's classes."""

    labels: list[str] | None = Field(default=None, min_length=1, max_length=100_000)
    """Class names, by class index; replaces the variant's labels. Its length must equal
    ``num_classes`` when both are given."""

    channels_last: bool = False
    """Run the model in channels-last memory format (often faster on GPUs with tensor cores)."""

    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Parameter and activation dtype. Half precision is allowed on CUDA devices only."""

    @model_validator(mode="after")
    def _labels_match_num_classes(self) -> Self:
        if self.labels is not None and self.num_classes is not None and len(self.labels) != self.num_classes:
            raise ValueError(f"labels has {len(self.labels)} names but num_classes is {self.num_classes}")
        return self

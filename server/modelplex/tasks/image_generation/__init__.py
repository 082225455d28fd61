"""The image-generation task: the interface and value types a plugin uses.

The runtime, servicer and settings are in the submodules of this package, imported by
the task's definition (:mod:`modelplex.tasks.image_generation.task`) when the server
discovers it.
"""

from modelplex.tasks.image_generation.interface import (
    ImageGenerationMeta,
    ImageGenerator,
    ImageInput,
    truncated_normal,
)

__all__ = ["ImageGenerationMeta", "ImageGenerator", "ImageInput", "truncated_normal"]

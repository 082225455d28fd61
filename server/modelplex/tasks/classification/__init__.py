"""The image-classification task: the interface and value types a plugin uses.

The runtime, servicer and settings are in the submodules of this package, imported by
the task's definition (:mod:`modelplex.tasks.classification.task`) when the server
discovers it; the ready-made PyTorch base for plugins is :mod:`.kit`.
"""

from modelplex.tasks.classification.interface import (
    ClassificationMeta,
    ClassScore,
    EncodedImage,
    ImageClassifier,
    ImagePreprocessing,
    RawTensor,
)

__all__ = ["ClassScore", "ClassificationMeta", "EncodedImage", "ImageClassifier", "ImagePreprocessing", "RawTensor"]

"""modelplex: serve pre-trained PyTorch models over gRPC, through plugins.

This module is the whole surface a plugin author imports::

    from modelplex import hookimpl, ModelSpec, Task, Variant, ImageClassifier

A plugin that brings a whole task also uses :class:`TaskDefinition` here and the
runtime pieces of :mod:`modelplex.runtime`.
"""

from modelplex.errors import (
    ConfigError,
    DeadlineExceededError,
    InvalidInputError,
    ModelExistsError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    ModelplexError,
    PluginError,
    QueueFullError,
    RuntimeLoadingDisabledError,
    WeightsNotFoundError,
    WrongTaskError,
)
from modelplex.hookspecs import hookimpl
from modelplex.specs import (
    TASK_ID_PATTERN,
    LoadContext,
    ModelSpec,
    NoSettings,
    Task,
    Variant,
    VariantMeta,
    WeightsChoice,
    WeightsSource,
)
from modelplex.taskdef import TaskDefinition
from modelplex.tasks import (
    ClassificationMeta,
    ClassScore,
    EncodedImage,
    ImageClassifier,
    ImagePreprocessing,
    NextToken,
    RawTensor,
    SamplingParams,
    TaskModel,
    TextGenerationMeta,
    TextGenerator,
    TopLogprob,
)

__version__ = "0.1.0"

__all__ = [
    "TASK_ID_PATTERN",
    "ClassScore",
    "ClassificationMeta",
    "ConfigError",
    "DeadlineExceededError",
    "EncodedImage",
    "ImageClassifier",
    "ImagePreprocessing",
    "InvalidInputError",
    "LoadContext",
    "ModelExistsError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelSpec",
    "ModelplexError",
    "NextToken",
    "NoSettings",
    "PluginError",
    "QueueFullError",
    "RawTensor",
    "RuntimeLoadingDisabledError",
    "SamplingParams",
    "Task",
    "TaskDefinition",
    "TaskModel",
    "TextGenerationMeta",
    "TextGenerator",
    "TopLogprob",
    "Variant",
    "VariantMeta",
    "WeightsChoice",
    "WeightsSource",
    "WeightsNotFoundError",
    "WrongTaskError",
    "__version__",
    "hookimpl",
]

"""modelplex: serve pre-trained PyTorch models over gRPC, through plugins.

This module is the whole surface a plugin author imports::

    from modelplex import hookimpl, ModelSpec, Task, Variant, ImageClassifier
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
    ImagePreprocessing,
    LoadContext,
    ModelSpec,
    NoSettings,
    Task,
    Variant,
    VariantMeta,
    WeightsChoice,
    WeightsSource,
)
from modelplex.tasks import (
    ClassScore,
    EncodedImage,
    ImageClassifier,
    NextToken,
    RawTensor,
    SamplingParams,
    TaskModel,
    TextGenerator,
    TopLogprob,
)

__version__ = "0.1.0"

__all__ = [
    "ClassScore",
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
    "TaskModel",
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

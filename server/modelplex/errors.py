"""The exceptions of modelplex.

Plugins raise these from their factories and task methods; the server maps each
to one gRPC status code (see ``modelplex.server.grpc_errors``), so a plugin never
imports grpc. Any other exception a plugin raises during inference is reported
to the client as INTERNAL and logged with its traceback; the server keeps serving.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeadlineExceededError",
    "InferenceError",
    "InvalidInputError",
    "OutOfRangeError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelplexError",
    "PluginError",
    "QueueFullError",
    "RuntimeLoadingDisabledError",
    "ModelExistsError",
    "PermissionDeniedError",
    "WeightsNotFoundError",
    "WrongTaskError",
]


class ModelplexError(Exception):
    """Base class of every error modelplex raises on purpose."""


class ConfigError(ModelplexError):
    """The configuration is invalid: an unknown key, a bad value, a missing device."""


class PluginError(ModelplexError):
    """A plugin failed to import or register (raised only in strict mode)."""


class ModelLoadError(ModelplexError):
    """A model could not be loaded. Raised by a factory or ``load()``."""


class WeightsNotFoundError(ModelLoadError):
    """The weights are not where the config says, or not in the local cache and
    downloads are off. The message says what to do."""


class ModelNotFoundError(ModelplexError):
    """No model with that name is loaded (gRPC NOT_FOUND)."""


class ModelExistsError(ModelplexError):
    """A model with that name is already loaded (gRPC ALREADY_EXISTS)."""


class WrongTaskError(ModelplexError):
    """The model exists but serves another task (gRPC INVALID_ARGUMENT)."""


class ModelNotReadyError(ModelplexError):
    """The model is still loading, failed, or is being unloaded (gRPC UNAVAILABLE)."""


class InvalidInputError(ModelplexError):
    """The request's input is unusable: a corrupt image, a bad parameter
    (gRPC INVALID_ARGUMENT). Raise it from ``preprocess`` and the like; the
    message is shown to the client, so say what was wrong and what is accepted."""


class PermissionDeniedError(ModelplexError):
    """The caller may not do this (gRPC PERMISSION_DENIED): a checkpoint path outside the
    configured weight roots."""


class OutOfRangeError(InvalidInputError):
    """The input passes a limit it may only reach while it is being received: a stream longer
    than the model's maximum duration (gRPC OUT_OF_RANGE)."""


class QueueFullError(ModelplexError):
    """The model's queue is full, or the input is too large (gRPC RESOURCE_EXHAUSTED)."""


class DeadlineExceededError(ModelplexError):
    """The request's deadline passed before its work ran (gRPC DEADLINE_EXCEEDED)."""


class RuntimeLoadingDisabledError(ModelplexError):
    """LoadModel/UnloadModel is turned off by the operator (gRPC FAILED_PRECONDITION)."""


class InferenceError(ModelplexError):
    """A plugin raised something other than a modelplex error while serving a
    request (gRPC INTERNAL). Raised by the server, not by plugins."""

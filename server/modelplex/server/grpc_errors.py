"""The one place where modelplex errors become gRPC status codes."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc import aio

from modelplex import errors

log = logging.getLogger(__name__)

__all__ = ["STATUS_CODES", "abort", "deadline_of", "grpc_errors", "grpc_stream_errors", "status_of"]

STATUS_CODES: dict[type[errors.ModelplexError], grpc.StatusCode] = {
    errors.ModelNotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.ModelExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.WrongTaskError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidInputError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.OutOfRangeError: grpc.StatusCode.OUT_OF_RANGE,
    errors.ConfigError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.WeightsNotFoundError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ModelLoadError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.RuntimeLoadingDisabledError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ModelNotReadyError: grpc.StatusCode.UNAVAILABLE,
    errors.QueueFullError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    errors.DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.InferenceError: grpc.StatusCode.INTERNAL,
}


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The status code of an exception: its class's, or its nearest base's; INTERNAL otherwise."""
    for cls in type(exc).__mro__:
        code = STATUS_CODES.get(cls)  # type: ignore[arg-type]
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


async def abort(context: aio.ServicerContext, exc: Exception, where: str) -> None:
    """Abort the call with the status of ``exc``; an unexpected one is logged and INTERNAL.
    (``context.abort`` raises, so this never returns normally.)"""
    if isinstance(exc, errors.ModelplexError):
        await context.abort(status_of(exc), _details(str(exc)))
        return
    log.error("unexpected error in %s", where, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, _details(f"internal error: {type(exc).__name__}: {exc}"))


def grpc_errors(method: F) -> F:
    """Wrap a unary servicer method: a raised error aborts the call with its status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as e:
            await abort(context, e, method.__qualname__)

    return wrapper  # type: ignore[return-value]


def grpc_stream_errors(
    method: Callable[..., AsyncIterator[Any]],
) -> Callable[..., AsyncIterator[Any]]:
    """Like :func:`grpc_errors`, for a server-streaming method."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as e:
            await abort(context, e, method.__qualname__)

    return wrapper


# gRPC drops a call whose status details pass its metadata limit (16 KiB), and the
# client then sees RESOURCE_EXHAUSTED instead of the real status.
_MAX_DETAILS = 2000


def _details(message: str) -> str:
    return message if len(message) <= _MAX_DETAILS else message[:_MAX_DETAILS] + "... (truncated)"


def deadline_of(context: aio.ServicerContext) -> float | None:
    """The call's deadline on the event loop's clock, or None when it has none."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + remaining

"""What every call goes through, whatever its task: authentication, malformed request
bytes, stream limits and duration, metrics, and one log line per failed call.

The interceptor rebuilds each method handler around the servicer's own: its request
deserializer turns bytes that do not parse into a marker (answered INVALID_ARGUMENT,
instead of grpc's UNKNOWN and a traceback per call), and its behaviour checks the
token, counts and times the call, and bounds streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from modelplex.server.metrics import Metrics
from modelplex.server.security import INFERENCE, MANAGEMENT, Authenticator
from modelplex.server.tracing import Tracer

log = logging.getLogger("modelplex.requests")

__all__ = ["CallPolicy", "RequestInterceptor"]

HEALTH_PREFIX = "/grpc.health.v1.Health/"


class _Malformed:
    """A request whose bytes did not parse as its message type."""

    def __init__(self, type_name: str, error: str) -> None:
        self.message = f"the request is not a valid {type_name}: {error}"


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    type_name = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = type_name.full_name if type_name is not None else "message"

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError) as e:
            return _Malformed(name, str(e) or type(e).__name__)

    return parse


@dataclass
class CallPolicy:
    """The limits and services the interceptor applies."""

    management_methods: frozenset[str]
    """Full method names that need the management scope."""
    max_streams: int | None = None
    max_streams_per_model: int | None = None
    max_stream_duration_s: float | None = None
    is_served: Callable[[str], bool] = lambda name: False
    """Whether a model of that name is loaded (only those become metric labels)."""


class _Call:
    """The bookkeeping of one call: its model label, request id, start and outcome."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.model = ""
        self.request_id = ""
        self.started = time.perf_counter()
        self.last = self.started
        self.messages = 0
        self.span: Any = None

    def saw(self, request: Any, is_served: Callable[[str], bool]) -> None:
        if self.messages == 0 and not self.model:
            # modelplex's requests name it `model`; the Open Inference Protocol's `model_name`.
            model = getattr(request, "model", "") or getattr(request, "model_name", "")
            # Only names of served models become labels: callers cannot grow the series.
            self.model = model if isinstance(model, str) and is_served(model) else ("unknown" if model else "")
            rid = getattr(request, "request_id", "")
            self.request_id = rid[:128] if isinstance(rid, str) else ""


class RequestInterceptor(aio.ServerInterceptor):
    def __init__(
        self,
        policy: CallPolicy,
        auth: Authenticator | None,
        metrics: Metrics | None,
        tracer: Tracer | None = None,
    ) -> None:
        self.policy = policy
        self.auth = auth
        self.metrics = metrics
        self.tracer = tracer
        self.streams = 0
        self.streams_by_model: Tally[str] = Tally()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        method = details.method
        denied = None
        if self.auth is not None:
            scope = MANAGEMENT if method in self.policy.management_methods else INFERENCE
            denied = self.auth.check(details.invocation_metadata, scope)
        deserialize = _safe(handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._stream_out(handler.stream_stream, method, denied, streamed_in=True), deserialize, serialize
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                self._unary_out(handler.stream_unary, method, denied, streamed_in=True), deserialize, serialize
            )
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._stream_out(handler.unary_stream, method, denied, streamed_in=False), deserialize, serialize
            )
        return grpc.unary_unary_rpc_method_handler(
            self._unary_out(handler.unary_unary, method, denied, streamed_in=False), deserialize, serialize
        )

    # -- the wrapped behaviours ---------------------------------------------------------------

    async def _admit(self, call: _Call, request: Any, context: aio.ServicerContext, denied: Any) -> None:
        if denied is not None:
            await context.abort(denied.code, denied.message)
        if isinstance(request, _Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        if request is not None:
            call.saw(request, self.policy.is_served)

    def _requests(self, call: _Call, iterator: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
        """A client stream's messages, each checked; the first names the model."""

        async def checked() -> AsyncIterator[Any]:
            async for request in iterator:
                if isinstance(request, _Malformed):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                call.saw(request, self.policy.is_served)
                yield request

        return checked()

    def _unary_out(self, behavior: Any, method: str, denied: Any, *, streamed_in: bool) -> Any:
        async def unary(request: Any, context: aio.ServicerContext) -> Any:
            call = _Call(method)
            code = grpc.StatusCode.OK
            span = self.tracer.span(method, context.invocation_metadata()) if self.tracer else contextlib.nullcontext()
            try:
                call.span = span.__enter__()
                if streamed_in:
                    await self._admit(call, None, context, denied)
                    request = self._requests(call, request, context)
                else:
                    await self._admit(call, request, context, denied)
                return await behavior(request, context)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                code = _code_of(context)
                raise
            finally:
                self._finish(call, code, context)
                span.__exit__(None, None, None)

        return unary

    def _stream_out(self, behavior: Any, method: str, denied: Any, *, streamed_in: bool) -> Any:
        async def stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            call = _Call(method)
            code = grpc.StatusCode.OK
            counted = False
            # A stream's span is not made current: its generator may be finished in another context.
            if self.tracer is not None:
                call.span = self.tracer.start(method, context.invocation_metadata())
            try:
                if streamed_in:
                    await self._admit(call, None, context, denied)
                    request = self._requests(call, request, context)
                else:
                    await self._admit(call, request, context, denied)
                counted = await self._count_stream(call, context)
                async with asyncio.timeout(self.policy.max_stream_duration_s):
                    async for message in behavior(request, context):
                        self._message(call)
                        yield message
            except TimeoutError:
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                await context.abort(
                    code, f"the stream passed its maximum duration of {self.policy.max_stream_duration_s:g} s"
                )
            except (asyncio.CancelledError, GeneratorExit):  # the client went away mid-stream
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                code = _code_of(context)
                raise
            finally:
                if counted:
                    self.streams -= 1
                    self.streams_by_model[call.model] -= 1
                self._finish(call, code, context)
                if call.span is not None and hasattr(call.span, "end"):
                    call.span.end()

        return stream

    async def _count_stream(self, call: _Call, context: aio.ServicerContext) -> bool:
        p = self.policy
        if p.max_streams is not None and self.streams >= p.max_streams:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server has {self.streams} streams open (max_concurrent_streams)",
            )
        if (
            p.max_streams_per_model is not None
            and call.model
            and self.streams_by_model[call.model] >= p.max_streams_per_model
        ):
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"model {call.model!r} has {self.streams_by_model[call.model]} streams open (max_streams_per_model)",
            )
        self.streams += 1
        self.streams_by_model[call.model] += 1
        return True

    def _message(self, call: _Call) -> None:
        now = time.perf_counter()
        if self.metrics is not None:
            histogram = self.metrics.first_message if call.messages == 0 else self.metrics.between_messages
            histogram.labels(call.method, call.model).observe(now - call.last)
        call.messages += 1
        call.last = now

    def _finish(self, call: _Call, code: grpc.StatusCode, context: aio.ServicerContext) -> None:
        if self.metrics is not None:
            self.metrics.requests.labels(call.method, call.model, code.name).inc()
            self.metrics.latency.labels(call.method, call.model).observe(time.perf_counter() - call.started)
            if code is grpc.StatusCode.CANCELLED:
                self.metrics.cancellations.labels(call.method, call.model).inc()
        if call.span is not None and hasattr(call.span, "set_attribute"):
            call.span.set_attribute("rpc.grpc.status_code", code.value[0])
            call.span.set_attribute("modelplex.model", call.model)
            if call.request_id:
                call.span.set_attribute("modelplex.request_id", call.request_id)
            if call.messages:
                call.span.set_attribute("modelplex.messages", call.messages)
        if code is not grpc.StatusCode.OK:
            details = context.details() if hasattr(context, "details") else ""
            level = logging.ERROR if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) else logging.INFO
            log.log(
                level,
                "%s failed: %s %s",
                call.method,
                code.name,
                (details or "")[:300],
                extra={"rpc": call.method, "model": call.model, "request_id": call.request_id, "status": code.name},
            )


def _code_of(context: aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN

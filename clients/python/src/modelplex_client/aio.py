"""The asyncio client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio

from modelplex_client._image_generation_calls import ImageGenerationCalls
from modelplex_client._methods import Methods, Stream, Unary
from modelplex_client._requests import StubsMixin, channel_options, channel_target, server_error
from modelplex_client._speech_recognition_calls import SpeechRecognitionCalls
from modelplex_client._speech_recognition_calls import stream_recognize_async as _stream_recognize
from modelplex_client._speech_synthesis_calls import SpeechSynthesisCalls

__all__ = ["AsyncClient"]


class AsyncClient(Methods, SpeechRecognitionCalls, SpeechSynthesisCalls, ImageGenerationCalls, StubsMixin):
    """An asyncio client of one modelplex server; use as an async context manager.

    The same calls as :class:`modelplex_client.Client`: unary ones are awaited
    (``await client.classify(...)``), streams iterated (``async for chunk in
    client.generate(...)``). Every call raises :class:`modelplex_client.ServerError`
    (with the gRPC status ``code`` and ``details``) when the server refuses or fails it.

    ``target`` is one server (``host:port``), a comma-separated list of replicas
    (``"10.0.0.1:50051,10.0.0.2:50051"``), or a URI such as ``dns:///name:50051`` (every
    address the name has): calls go round robin over the replicas, and idempotent ones
    that fail UNAVAILABLE are tried again on another (``_requests.service_config``).
    """

    stream_recognize = _stream_recognize
    """Stream audio to ``StreamingRecognize``: ``stream_recognize(chunks, model=, sample_rate_hz=, ...)``
    yields the responses (interim and final results) as they come (see ``_speech_recognition_calls``)."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float | None = None,
        max_message_mb: float = 64,
        channel: aio.Channel | None = None,
    ) -> None:
        self._bind(
            target,
            timeout,
            channel or aio.insecure_channel(channel_target(target), options=channel_options(max_message_mb)),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _unary(self, call: Unary, request: Any, timeout: float | None) -> Any:
        method = getattr(getattr(self, call.stub), call.rpc)
        try:
            response = await method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            error = server_error(e)
            if call.on_error is None:
                raise error from None
            return call.on_error(error)
        return call.result(response)

    async def _stream(self, call: Stream, request: Any, timeout: float | None) -> AsyncIterator[Any]:
        rpc = getattr(getattr(self, call.stub), call.rpc)(request, timeout=self.timeout if timeout is None else timeout)
        try:
            async for response in rpc:
                yield call.result(response)
        except grpc.RpcError as e:
            raise server_error(e) from None
        finally:
            rpc.cancel()  # a no-op once the stream has ended

"""The asyncio client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2

from modelplex_client._requests import (
    ImageLike,
    ServerError,
    StubsMixin,
    channel_options,
    classify_request,
    generate_request,
    load_request,
    server_error,
)
from modelplex_client.pb import (
    image_classification_pb2,
    models_pb2,
    text_generation_pb2,
)

__all__ = ["AsyncClient"]


class AsyncClient(StubsMixin):
    """An asyncio client of one modelplex server; use as an async context manager.

    Every method raises :class:`modelplex_client.ServerError` (with the gRPC
    status ``code`` and ``details``) when the server refuses or fails a call.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float | None = None,
        max_message_mb: float = 64,
        channel: aio.Channel | None = None,
    ) -> None:
        self._bind(target, timeout, channel or aio.insecure_channel(target, options=channel_options(max_message_mb)))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise server_error(e) from None

    async def list_models(self, *, timeout: float | None = None) -> list[models_pb2.ModelInfo]:
        """Every model on the server, with its state, weights and instances."""
        return list((await self._call(self._models.ListModels, models_pb2.ListModelsRequest(), timeout)).models)

    async def get_model(self, model: str, *, timeout: float | None = None) -> models_pb2.ModelInfo:
        return await self._call(self._models.GetModel, models_pb2.GetModelRequest(model=model), timeout)

    async def load_model(self, spec: str, *, timeout: float | None = None, **options: Any) -> models_pb2.ModelInfo:
        """Load a model from a registered spec; ``options`` are those of LoadModelRequest
        (name, variant, weights, devices, instances_per_device, settings, max_batch_size, ...)."""
        return await self._call(self._models.LoadModel, load_request(spec, **options), timeout)

    async def unload_model(self, model: str, *, timeout: float | None = None) -> None:
        await self._call(self._models.UnloadModel, models_pb2.UnloadModelRequest(model=model), timeout)

    async def list_plugins(self, *, timeout: float | None = None) -> list[models_pb2.PluginInfo]:
        return list((await self._call(self._models.ListPlugins, models_pb2.ListPluginsRequest(), timeout)).plugins)

    async def classify(
        self,
        images: Iterable[ImageLike],
        *,
        model: str,
        top_k: int = 0,
        request_id: str = "",
        timeout: float | None = None,
    ) -> list[Sequence[image_classification_pb2.ClassScore]]:
        """Classify a batch of images; one top-k list (best first) per image.
        ``top_k`` 0 asks for the server default: 5, or every class if fewer."""
        request = classify_request(images, model, top_k, request_id)
        response = await self._call(self._classification.Classify, request, timeout)
        return [r.classes for r in response.results]

    async def classify_request(
        self, request: image_classification_pb2.ClassifyRequest, *, timeout: float | None = None
    ) -> image_classification_pb2.ClassifyResponse:
        """Send a ClassifyRequest as built; the whole response."""
        return await self._call(self._classification.Classify, request, timeout)

    async def generate(
        self, prompt: str, *, model: str, timeout: float | None = None, **options: Any
    ) -> AsyncIterator[text_generation_pb2.GenerateResponse]:
        """Generate text from ``prompt``, yielding the stream's chunks as they are decoded:
        each has the ``text`` delta and its ``token_ids``; the last also has
        ``finish_reason``, ``usage`` and ``time_to_first_token_ms``. Options are those
        of GenerateRequest (max_new_tokens, temperature, top_k, top_p,
        repetition_penalty, seed, stop, logprobs, request_id). Leaving the loop early
        cancels the generation on the server."""
        request = generate_request(prompt, model=model, **options)
        call = self._text.Generate(request, timeout=self.timeout if timeout is None else timeout)
        try:
            async for chunk in call:
                yield chunk
        except grpc.RpcError as e:
            raise server_error(e) from None
        finally:
            call.cancel()  # a no-op once the stream has ended

    async def complete(
        self, prompt: str, *, model: str, timeout: float | None = None, **options: Any
    ) -> text_generation_pb2.CompleteResponse:
        """The whole generated text at once (the unary Complete call); options as for ``generate``."""
        return await self._call(self._text.Complete, generate_request(prompt, model=model, **options), timeout)

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """The grpc.health.v1 status name of the server (""), a service, or a model
        (``"modelplex.model/NAME"``): SERVING, NOT_SERVING, SERVICE_UNKNOWN."""
        try:
            response = await self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        except ServerError as e:
            if e.code == grpc.StatusCode.NOT_FOUND:  # the health service's word for a name it never set
                return "SERVICE_UNKNOWN"
            raise
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

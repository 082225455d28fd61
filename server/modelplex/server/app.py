"""The server: plugins, registry, gRPC services, health and reflection, lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from modelplex.server.config import Config
from modelplex.server.devices import DeviceInventory, torch_inventory
from modelplex.server.plugins import PluginSet, discover
from modelplex.server.registry import ModelRegistry
from modelplex.server.servicers.classification import ImageClassificationServicer
from modelplex.server.servicers.repository import ModelRepositoryServicer
from modelplex.server.servicers.text_generation import TextGenerationServicer
from modelplex_client.pb import (
    image_classification_pb2,
    image_classification_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    text_generation_pb2,
    text_generation_pb2_grpc,
)

log = logging.getLogger(__name__)

__all__ = ["ModelServer", "model_health_name"]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

_SERVICES = [
    (models_pb2.DESCRIPTOR.services_by_name["ModelRepository"].full_name, None),
    (image_classification_pb2.DESCRIPTOR.services_by_name["ImageClassification"].full_name, None),
    (text_generation_pb2.DESCRIPTOR.services_by_name["TextGeneration"].full_name, None),
]


def model_health_name(model: str) -> str:
    """The grpc.health.v1 service name under which a model's readiness is reported."""
    return f"modelplex.model/{model}"


class ModelServer:
    """One modelplex server. ``await start()``, then ``await stop()`` (in a ``finally``)."""

    def __init__(
        self,
        config: Config,
        *,
        plugins: PluginSet | None = None,
        inventory: DeviceInventory | None = None,
        extra_plugins: Iterable[tuple[str, Any]] = (),
    ) -> None:
        self.config = config
        self.plugins = plugins or discover(config.plugins, extra=extra_plugins)
        self.inventory = inventory or torch_inventory()
        self.health = health.aio.HealthServicer()
        self.registry = ModelRegistry(
            self.plugins, self.inventory, allow_download=config.server.allow_download, on_state=self._model_state
        )
        self.port: int | None = None
        self._server: aio.Server | None = None
        self._health_tasks: set[asyncio.Task[None]] = set()

    def _model_state(self, name: str, serving: bool) -> None:
        task = asyncio.ensure_future(self.health.set(model_health_name(name), SERVING if serving else NOT_SERVING))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def start(self) -> int:
        """Validate the configured models, start listening, load the models; return the port.

        Raises ConfigError/WeightsNotFoundError before binding for anything
        detectable without loading, and ModelLoadError (after stopping) if a model fails to load.
        """
        plans = [self.registry.plan(m) for m in self.config.models]
        s = self.config.server
        max_bytes = int(s.max_message_mb * 1024 * 1024)
        self._server = aio.server(
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=s.max_concurrent_rpcs,
        )
        models_pb2_grpc.add_ModelRepositoryServicer_to_server(
            ModelRepositoryServicer(self.registry, allow_runtime_loading=s.allow_runtime_loading), self._server
        )
        image_classification_pb2_grpc.add_ImageClassificationServicer_to_server(
            ImageClassificationServicer(self.registry), self._server
        )
        text_generation_pb2_grpc.add_TextGenerationServicer_to_server(
            TextGenerationServicer(self.registry), self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [n for n, _ in _SERVICES]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server)
        try:
            self.port = self._server.add_insecure_port(f"{s.host}:{s.port}")
        except RuntimeError as e:
            raise OSError(f"cannot listen on {s.host}:{s.port}: {e}") from None
        # grpc's health servicer starts with "" SERVING; the server is not ready until its models are.
        await self.health.set("", NOT_SERVING)
        for name in names:
            await self.health.set(name, SERVING)
        for plan in plans:
            await self.health.set(model_health_name(plan.name), NOT_SERVING)
        await self._server.start()
        log.info("modelplex listening on %s:%d", s.host, self.port)
        try:
            # One model after another (each one's instances load in parallel), so that
            # "auto" placement sees the memory the models before it took.
            for m in self.config.models:
                await self.registry.load(m)
        except BaseException:
            await self.stop(grace=0)
            raise
        await self.health.set("", SERVING)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Go NOT_SERVING, refuse new calls, let in-flight ones finish within the grace period, unload."""
        if self._server is None:
            return
        grace = self.config.server.grace_period_s if grace is None else grace
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None
        await self.registry.close()
        log.info("modelplex stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

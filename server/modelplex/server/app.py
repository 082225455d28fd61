"""The server: plugins, registry, gRPC services, health and reflection, lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as _reflection_v1alpha_grpc

from modelplex.server.config import Config
from modelplex.server.devices import DeviceInventory, torch_inventory
from modelplex.server.plugins import PluginSet, discover
from modelplex.server.registry import ModelRegistry
from modelplex.server.repository import ModelRepositoryServicer
from modelplex_client.pb import models_pb2, models_pb2_grpc

log = logging.getLogger(__name__)

__all__ = ["ModelServer", "model_health_name"]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

REPOSITORY_SERVICE = models_pb2.DESCRIPTOR.services_by_name["ModelRepository"].full_name
# grpc.reflection.v1 is served beside v1alpha (what older grpcurl and clients ask for).
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _enable_reflection(services: list[str], server: aio.Server) -> None:
    """Serve grpc.reflection.v1alpha and grpc.reflection.v1. grpcio-reflection ships only
    v1alpha; v1 has the same messages (same fields and numbers), so the one servicer
    answers both, with v1alpha's (wire-identical) message classes."""
    servicer = reflection.aio.ReflectionServicer([*services, reflection.SERVICE_NAME, REFLECTION_V1])
    _reflection_v1alpha_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": v1}),)
    )


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
        names = [REPOSITORY_SERVICE]
        for task_id, (task, _plugin) in sorted(self.plugins.tasks.items()):
            task.add_servicers(self.registry.lookup(task_id), self._server)
            names.extend(task.services)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        _enable_reflection([*names, health.SERVICE_NAME], self._server)
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

"""The server: plugins, registry, gRPC services, health and reflection, lifecycle."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as _reflection_v1alpha_grpc

from modelplex.errors import ConfigError, ModelLoadError, ModelplexError
from modelplex.server.config import Config
from modelplex.server.devices import DeviceInventory, torch_inventory
from modelplex.server.interceptors import CallPolicy, RequestInterceptor
from modelplex.server.metrics import Metrics
from modelplex.server.oip import MANAGEMENT_METHODS as OIP_MANAGEMENT_METHODS
from modelplex.server.oip import OIP_SERVICE, add_oip_servicer
from modelplex.server.plugins import PluginSet, discover
from modelplex.server.registry import ModelRegistry
from modelplex.server.repository import ModelRepositoryServicer
from modelplex.server.security import Authenticator, check_exposure, server_credentials
from modelplex.server.tracing import Tracer
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
        self.auth = Authenticator(config.server.auth)
        self.metrics = Metrics(self.registry.list) if config.server.metrics_port is not None else None
        self.port: int | None = None
        self._server: aio.Server | None = None
        self._certificates: Any = None
        self.front_doors: dict[str, Any] = {}
        """The servers tasks brought beside gRPC, by name, when configured (server.front_doors)."""
        self.abandoned_work = False
        """Set when stop() gave up waiting for model work (the process should exit at once)."""
        self._health_tasks: set[asyncio.Task[None]] = set()

    def _model_state(self, name: str, serving: bool | None) -> None:
        """A model's health: SERVING, NOT_SERVING, or (None) gone: a failed load or an unloaded
        model leaves no health entry behind."""
        task = asyncio.ensure_future(self._set_model_health(model_health_name(name), serving))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def _set_model_health(self, service: str, serving: bool | None) -> None:
        if serving is None:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)  # tells watchers
            # grpc's servicer has no removal; Check answers NOT_FOUND for a name it does not hold.
            self.health._server_status.pop(service, None)
            return
        await self.health.set(service, SERVING if serving else NOT_SERVING)

    def reload(self) -> None:
        """Read the tokens and the TLS files again (SIGHUP)."""
        self.auth.reload()
        if self._certificates is not None:
            self._certificates.reload()

    def _options(self) -> list[tuple[str, Any]]:
        s = self.config.server
        max_bytes = int(s.max_message_mb * 1024 * 1024)
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", int(s.keepalive_time_s * 1000)),
            ("grpc.keepalive_timeout_ms", 20_000),
            # Clients may ping idle connections (grpc's default allows one every 5 minutes).
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if s.max_connection_age_s is not None:
            options.append(("grpc.max_connection_age_ms", int(s.max_connection_age_s * 1000)))
            options.append(("grpc.max_connection_age_grace_ms", int(s.max_connection_age_grace_s * 1000)))
        return options

    def _interceptor(self) -> RequestInterceptor:
        s = self.config.server
        repository = f"/{REPOSITORY_SERVICE}/"
        policy = CallPolicy(
            management_methods=frozenset({repository + "LoadModel", repository + "UnloadModel"})
            | OIP_MANAGEMENT_METHODS,
            max_streams=s.max_concurrent_streams,
            max_streams_per_model=s.max_streams_per_model,
            max_stream_duration_s=s.max_stream_duration_s,
            is_served=self.registry.has,
        )
        tracer = Tracer(s.tracing) if s.tracing.enabled else None
        return RequestInterceptor(policy, self.auth if self.auth.enabled else None, self.metrics, tracer)

    async def start(self) -> int:
        """Validate the configured models, start listening, load the models; return the port.

        Raises ConfigError/WeightsNotFoundError before binding for anything
        detectable without loading, and ModelLoadError (after stopping) if a model fails to load.
        """
        plans = [self.registry.plan(m) for m in self.config.models]
        s = self.config.server
        check_exposure(s, self.auth)
        unknown = sorted(set(s.front_doors) - set(self._doors()))
        if unknown:
            known = ", ".join(sorted(self._doors())) or "none"
            raise ConfigError(f"server.front_doors: no task brings {', '.join(unknown)}; known: {known}")
        credentials = None
        if s.tls is not None:
            credentials, self._certificates = server_credentials(s.tls)
        self._server = aio.server(
            options=self._options(),
            maximum_concurrent_rpcs=s.max_concurrent_rpcs,
            interceptors=[self._interceptor()],
        )
        repository = ModelRepositoryServicer(
            self.registry,
            allow_runtime_loading=s.allow_runtime_loading,
            weights_roots=s.weights_roots,
            max_models=s.max_models,
        )
        models_pb2_grpc.add_ModelRepositoryServicer_to_server(repository, self._server)
        add_oip_servicer(self.registry, repository, lambda: self.health._server_status.get("") == SERVING, self._server)
        names = [REPOSITORY_SERVICE, OIP_SERVICE]
        for task_id, (task, _plugin) in sorted(self.plugins.tasks.items()):
            task.add_servicers(self.registry.lookup(task_id), self._server)
            names.extend(task.services)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        _enable_reflection([*names, health.SERVICE_NAME], self._server)
        try:
            address = f"{s.host}:{s.port}"
            if credentials is None:
                self.port = self._server.add_insecure_port(address)
            else:
                self.port = self._server.add_secure_port(address, credentials)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {s.host}:{s.port}: {e}") from None
        # grpc's health servicer starts with "" SERVING; the server is not ready until its models are.
        await self.health.set("", NOT_SERVING)
        for name in names:
            await self.health.set(name, SERVING)
        for plan in plans:
            await self.health.set(model_health_name(plan.name), NOT_SERVING)
        await self._server.start()
        log.info("modelplex listening on %s:%d%s", s.host, self.port, " (TLS)" if credentials else "")
        if self.metrics is not None and s.metrics_port is not None:
            self.metrics.serve(s.host, s.metrics_port)
        if s.front_doors:
            await self._start_front_doors(s.host, s.front_doors)
        try:
            # One model after another (each one's instances load in parallel), so that
            # "auto" placement sees the memory the models before it took.
            for m in self.config.models:
                try:
                    await self.registry.load(m)
                except ModelplexError as e:
                    raise _naming(e, m.name or m.spec) from e
        except BaseException:
            await self.stop(grace=0)
            raise
        await self.health.set("", SERVING)
        return self.port

    def _model_names(self, task_id: str) -> list[str]:
        return [m.name for m in self.registry.list() if m.task == task_id]

    def _doors(self) -> dict[str, tuple[str, Any]]:
        """The front doors the registered tasks bring, by name: (task id, FrontDoor)."""
        return {t.front_door.name: (i, t.front_door) for i, (t, _) in self.plugins.tasks.items() if t.front_door}

    async def _start_front_doors(self, host: str, ports: dict[str, int]) -> None:
        """Start the servers tasks bring beside gRPC (``server.front_doors``)."""
        doors = self._doors()
        for name, port in sorted(ports.items()):
            task_id, door = doors[name]
            server = door.create(
                functools.partial(self._model_names, task_id), self.auth if self.auth.enabled else None
            )
            bound = await server.start(self.registry.lookup(task_id), host, port)
            self.front_doors[name] = server
            log.info("front door %r of task %s on %s:%s", name, task_id, host, bound)

    async def stop(self, grace: float | None = None) -> None:
        """Go NOT_SERVING, refuse new calls, let in-flight ones finish within the grace period, unload."""
        if self._server is None:
            return
        grace = self.config.server.grace_period_s if grace is None else grace
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None
        for door in self.front_doors.values():
            await door.stop()
        self.front_doors.clear()
        if self.metrics is not None:
            self.metrics.close()
        # Unloading waits for the work each instance's thread is running, which a plugin's
        # forward pass cannot be interrupted in: wait at most shutdown_bound_s for it.
        bound = self.config.server.shutdown_bound_s
        try:
            await asyncio.wait_for(asyncio.shield(self.registry.close()), bound)
        except TimeoutError:
            self.abandoned_work = True
            log.error("model work still running %.1f s after the grace period; exiting without it", bound)
        log.info("modelplex stopped")


def _naming(error: ModelplexError, name: str) -> ModelplexError:
    """``error`` with the configured model's name in front, unless its message names it: with
    several models in the config, an operator must see which one failed to load."""
    text = str(error)
    if repr(name) in text:
        return error
    try:
        return type(error)(f"model {name!r}: {text}")
    except TypeError:  # an error class with its own constructor
        return ModelLoadError(f"model {name!r}: {text}")

"""inference.GRPCInferenceService: the Open Inference Protocol (OIP v2) over every task.

KServe's V2 protocol (ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata,
ModelInfer), Triton's ModelStreamInfer with its decoupled semantics, and Triton's
model-repository extension mapped onto the registry (docs/oip.md). Task-generic: a
model's tensors and its call come from its task's :class:`~modelplex.oip_mapping.OipMapping`
(``TaskDefinition.oip``); this module decodes and checks the wire tensors
(:mod:`.oip_tensors`), and maps errors to statuses. Loading and unloading go through the
ModelRepository servicer, so that its checks (runtime loading allowed, weights roots,
model count) hold here too; the interceptor asks the management scope for them
(:data:`MANAGEMENT_METHODS`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata as dist_metadata
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from grpc import aio

from modelplex.errors import ConfigError, InvalidInputError, ModelNotFoundError, ModelplexError
from modelplex.oip_mapping import OipMapping, OipMetadata
from modelplex.server.grpc_errors import abort, deadline_of, status_of
from modelplex.server.oip_tensors import check_inputs, decode_inputs, encode_outputs, read_parameters
from modelplex.server.registry import LoadedModel, ModelRegistry, ModelState
from modelplex.server.repository import ModelRepositoryServicer
from modelplex.server.runtimes.base import TaskRuntime
from modelplex_client.pb import grpc_predict_v2_pb2 as pb
from modelplex_client.pb import grpc_predict_v2_pb2_grpc as pb_grpc
from modelplex_client.pb import models_pb2

log = logging.getLogger(__name__)

__all__ = ["MANAGEMENT_METHODS", "OIP_SERVICE", "OipServicer", "add_oip_servicer"]

OIP_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
MANAGEMENT_METHODS = frozenset(f"/{OIP_SERVICE}/{rpc}" for rpc in ("RepositoryModelLoad", "RepositoryModelUnload"))
"""The OIP methods that need the management scope (like ModelRepository's LoadModel/UnloadModel)."""

FINAL = "triton_final_response"
EMPTY_FINAL = "triton_enable_empty_final_response"
TIMEOUT = "timeout"
"""Triton's request timeout parameter, in microseconds: tightens the call's deadline."""
SERVER_PARAMETERS = (FINAL, EMPTY_FINAL, TIMEOUT)
STREAM_BUFFER = 16
"""Responses a ModelStreamInfer call holds for a client that reads slowly; then its requests
wait (and a decoupled one's generation sits its steps out)."""
_STATES = {ModelState.READY: "READY", ModelState.LOADING: "LOADING", ModelState.UNLOADING: "UNLOADING"}
_LOAD_FIELDS = {"spec", "variant", "weights", "devices", "instances_per_device", "settings"}


def _version() -> str:
    try:
        return dist_metadata.version("modelplex")
    except dist_metadata.PackageNotFoundError:
        return "0"


class NotMappedError(ModelplexError):
    """The model's task has no OIP mapping (UNIMPLEMENTED)."""


def _status(exc: Exception) -> grpc.StatusCode:
    return grpc.StatusCode.UNIMPLEMENTED if isinstance(exc, NotMappedError) else status_of(exc)


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _errors(method: F) -> F:
    """Like grpc_errors, with UNIMPLEMENTED for an unmapped task; an abort already made (by
    the ModelRepository servicer this one calls) passes through as it is."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except aio.AbortError:
            raise
        except NotMappedError as e:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, str(e))
        except Exception as e:
            await abort(context, e, method.__qualname__)

    return wrapper  # type: ignore[return-value]


@dataclass
class _Target:
    """A request's model: its runtime, mapping and metadata."""

    runtime: TaskRuntime[Any]
    mapping: OipMapping
    meta: OipMetadata


@dataclass
class _Call:
    """One checked ModelInfer request, ready to run."""

    target: _Target
    inputs: dict[str, Any]
    parameters: dict[str, Any]
    server_parameters: dict[str, Any]
    wanted: list[str]
    raw: bool


class OipServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The OIP front door over the registry; see the module doc."""

    def __init__(self, registry: ModelRegistry, repository: ModelRepositoryServicer, ready: Callable[[], bool]) -> None:
        self._registry = registry
        self._repository = repository
        self._ready = ready
        self._version = _version()
        # A runtime's tensors do not change while it is loaded: described once, not per request.
        self._metadata: weakref.WeakKeyDictionary[TaskRuntime[Any], OipMetadata] = weakref.WeakKeyDictionary()

    # -- health and metadata ------------------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: aio.ServicerContext) -> pb.ModelReadyResponse:
        model = next((m for m in self._registry.list() if m.name == request.name), None)
        ready = model is not None and model.state is ModelState.READY and not request.version
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="modelplex", version=self._version, extensions=["model_repository"])

    @_errors
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        model = self._model(request.name, request.version)
        response = pb.ModelMetadataResponse(name=model.name, platform=f"modelplex/{model.task}")
        if model.plan.task.oip is None:
            return response
        meta = self._target(model).meta
        for spec in meta.inputs:
            response.inputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        for spec in meta.outputs:
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        return response

    def _model(self, name: str, version: str) -> LoadedModel:
        model = self._registry.describe(name)
        if version:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version[:40]!r}: modelplex serves one version per name; "
                "leave the version empty"
            )
        return model

    def _target(self, model: LoadedModel) -> _Target:
        mapping = model.plan.task.oip
        if mapping is None:
            services = ", ".join(model.plan.task.services)
            raise NotMappedError(
                f"model {model.name!r} serves task {model.task}, which has no Open Inference Protocol "
                f"mapping; call {services}"
            )
        runtime = self._registry.get(model.name, model.task)  # UNAVAILABLE unless ready
        meta = self._metadata.get(runtime)
        if meta is None:
            meta = self._metadata[runtime] = mapping.metadata(runtime)
        return _Target(runtime, mapping, meta)

    # -- inference ----------------------------------------------------------------------------

    def _prepare(self, request: pb.ModelInferRequest) -> _Call:
        target = self._target(self._model(request.model_name, request.model_version))
        inputs, datatypes, raw = decode_inputs(request)
        check_inputs(inputs, datatypes, target.meta.inputs)
        parameters, server = read_parameters(request.parameters, target.meta.parameters, SERVER_PARAMETERS)
        declared = [s.name for s in target.meta.outputs]
        wanted = []
        for output in request.outputs:
            if output.name not in declared:
                raise InvalidInputError(
                    f"unknown output {output.name!r}; the model gives {', '.join(map(repr, declared))}"
                )
            if output.parameters:  # Triton's extensions (shared memory, top-k as strings) are not served
                raise InvalidInputError(
                    f"output {output.name!r}: parameter {sorted(output.parameters)[0]!r} is not taken; "
                    "outputs take no parameters here"
                )
            wanted.append(output.name)
        return _Call(target, inputs, parameters, server, wanted, raw or not request.inputs)

    def _deadline(self, call: _Call, context: aio.ServicerContext) -> float | None:
        deadline = deadline_of(context)
        timeout = call.server_parameters.get(TIMEOUT)
        if timeout is None:
            return deadline
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise InvalidInputError(f"parameter 'timeout' must be a positive integer of microseconds, got {timeout!r}")
        own = asyncio.get_running_loop().time() + timeout / 1e6
        return own if deadline is None else min(own, deadline)

    def _response(self, request: pb.ModelInferRequest, call: _Call, outputs: Any) -> pb.ModelInferResponse:
        response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        encode_outputs(response, outputs, call.target.meta.outputs, call.wanted, call.raw)
        return response

    @_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelInferResponse:
        call = self._prepare(request)
        t = call.target
        outputs = await t.mapping.infer(t.runtime, call.inputs, call.parameters, self._deadline(call, context))
        return self._response(request, call, outputs)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Each request runs as its own task as soon as it arrives; their responses interleave
        (matched by ``id``). A request's error is answered on the stream, which stays open;
        the call ends once the client has half-closed and every request is answered."""
        out: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue(STREAM_BUFFER)
        tasks: set[asyncio.Task[None]] = set()
        failure: list[BaseException] = []
        producers = 1  # the reader, then one per request; each puts None when it is done

        async def answer(request: pb.ModelInferRequest) -> None:
            try:
                async for response in self._stream_one(request, context):
                    await out.put(pb.ModelStreamInferResponse(infer_response=response))
            except asyncio.CancelledError:
                raise  # the call is over: nobody reads the queue any more
            except Exception as e:
                await out.put(_stream_error(request, e))
            await out.put(None)

        async def read() -> None:
            nonlocal producers
            try:
                async for request in request_iterator:
                    producers += 1
                    task = asyncio.create_task(answer(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # a malformed message, aborted by the interceptor
                failure.append(e)
            await out.put(None)

        reader = asyncio.create_task(read())
        try:
            while producers:
                item = await out.get()
                if item is None:
                    producers -= 1
                    if failure:
                        raise failure[0]
                    continue
                yield item
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()  # the client left (or the stream failed): stop every request's work

    async def _stream_one(
        self, request: pb.ModelInferRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.ModelInferResponse]:
        call = self._prepare(request)
        t = call.target
        ended = False
        async for item in t.mapping.stream(t.runtime, call.inputs, call.parameters, self._deadline(call, context)):
            response = self._response(request, call, item.outputs)
            response.parameters[FINAL].bool_param = item.final
            ended = item.final
            yield response
        if not ended and call.server_parameters.get(EMPTY_FINAL) is True:
            empty = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
            empty.parameters[FINAL].bool_param = True
            yield empty

    # -- the repository extension -------------------------------------------------------------

    @_errors
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        models = [m for m in self._registry.list() if not request.ready or m.state is ModelState.READY]
        return pb.RepositoryIndexResponse(
            models=[pb.RepositoryIndexResponse.ModelIndex(name=m.name, state=_STATES[m.state]) for m in models]
        )

    @_errors
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        """Load ``model_name`` through ModelRepository.LoadModel: from the JSON object in the
        ``config`` parameter (the keys of a [[models]] entry), or, without one, from the spec
        of that name with its defaults. A model already loaded and no config: nothing to do."""
        name = request.model_name
        unknown = sorted(set(request.parameters) - {"config"})
        if unknown:
            raise InvalidInputError(
                f"parameter {unknown[0]!r} is not taken: give the model's keys as JSON in 'config' "
                "(model files are not uploaded; name a path under the server's weights roots)"
            )
        config = request.parameters["config"].string_param if "config" in request.parameters else ""
        if not config and any(m.name == name for m in self._registry.list()):
            return pb.RepositoryModelLoadResponse()
        await self._repository.LoadModel(self._load_request(name, config), context)
        return pb.RepositoryModelLoadResponse()

    def _load_request(self, name: str, config: str) -> models_pb2.LoadModelRequest:
        try:
            fields = json.loads(config) if config else {"spec": name}
        except ValueError as e:
            raise ConfigError(f"parameter 'config' is not valid JSON: {e}") from None
        if not isinstance(fields, dict):
            raise ConfigError(f"parameter 'config' must be a JSON object, got {type(fields).__name__}")
        if not isinstance(fields.get("spec", name), str):
            raise ConfigError("config key 'spec' must be a string")
        own = {k: v for k, v in fields.items() if k in _LOAD_FIELDS}
        extra = {k: v for k, v in fields.items() if k not in _LOAD_FIELDS}
        settings = own.pop("settings", None)
        try:
            request = json_format.ParseDict({"spec": name, **own, "model": name}, models_pb2.LoadModelRequest())
        except json_format.ParseError as e:
            raise ConfigError(f"parameter 'config': {e}") from None
        if settings is not None:
            request.settings_json = json.dumps(settings)
        if extra:
            request.task_settings.CopyFrom(self._task_settings(request.spec, extra))
        return request

    def _task_settings(self, spec_name: str, values: dict[str, Any]) -> any_pb2.Any:
        """The keys beyond a model's own, as its task's settings message (LoadModel checks them)."""
        try:
            spec, _ = self._registry.plugins.spec(spec_name)
            task = self._registry.plugins.task(spec.task)
        except KeyError as e:
            raise ConfigError(e.args[0]) from None
        if not task.settings_message:
            raise ConfigError(f"config keys {sorted(values)}: task {task.id} takes no serving settings")
        cls = message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(task.settings_message))
        try:
            message = json_format.ParseDict(values, cls())
        except json_format.ParseError as e:
            raise ConfigError(f"parameter 'config' (task {task.id} settings): {e}") from None
        packed = any_pb2.Any()
        packed.Pack(message)
        return packed

    @_errors
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        unknown = sorted(set(request.parameters) - {"unload_dependents"})
        if unknown:
            raise InvalidInputError(f"parameter {unknown[0]!r} is not taken by RepositoryModelUnload")
        await self._repository.UnloadModel(models_pb2.UnloadModelRequest(model=request.model_name), context)
        return pb.RepositoryModelUnloadResponse()


def _stream_error(request: pb.ModelInferRequest, exc: Exception) -> pb.ModelStreamInferResponse:
    """A request's failure on a ModelStreamInfer stream: ``error_message`` (its status name
    first), with the request's model and id so that the client can tell which one failed."""
    if isinstance(exc, ModelplexError):
        message = f"{_status(exc).name}: {exc}"
    else:
        log.error("a ModelStreamInfer request failed", exc_info=exc)
        message = f"INTERNAL: {type(exc).__name__}: {exc}"
    failed = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
    return pb.ModelStreamInferResponse(error_message=message, infer_response=failed)


def add_oip_servicer(
    registry: ModelRegistry, repository: ModelRepositoryServicer, ready: Callable[[], bool], server: aio.Server
) -> None:
    """Serve ``inference.GRPCInferenceService`` on ``server``; ``ready`` says whether the
    server is ready (ServerReady)."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(OipServicer(registry, repository, ready), server)

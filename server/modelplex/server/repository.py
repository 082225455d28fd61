"""modelplex.v1.ModelRepository over the registry and the plugin reports."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from grpc import aio
from pydantic import ValidationError

from modelplex.errors import ConfigError, PermissionDeniedError, QueueFullError, RuntimeLoadingDisabledError
from modelplex.server.config import ModelConfig
from modelplex.server.grpc_errors import grpc_errors
from modelplex.server.plugins import PluginReport, PluginSet, PluginState
from modelplex.server.registry import LoadedModel, ModelRegistry, ModelState, looks_like_id
from modelplex.specs import ModelSpec, WeightsSource, server_path_fields
from modelplex.taskdef import TaskDefinition
from modelplex_client.pb import models_pb2 as pb
from modelplex_client.pb import models_pb2_grpc as pb_grpc

__all__ = ["ModelRepositoryServicer", "model_info"]

_STATES = {
    ModelState.LOADING: pb.MODEL_STATE_LOADING,
    ModelState.READY: pb.MODEL_STATE_READY,
    ModelState.UNLOADING: pb.MODEL_STATE_UNLOADING,
}
_SOURCES = {
    WeightsSource.PRETRAINED: pb.WEIGHTS_SOURCE_PRETRAINED,
    WeightsSource.CHECKPOINT: pb.WEIGHTS_SOURCE_CHECKPOINT,
    WeightsSource.RANDOM: pb.WEIGHTS_SOURCE_RANDOM,
}
_PLUGIN_STATES = {
    PluginState.ACTIVE: pb.PLUGIN_STATE_ACTIVE,
    PluginState.BROKEN: pb.PLUGIN_STATE_BROKEN,
    PluginState.SKIPPED: pb.PLUGIN_STATE_SKIPPED,
}


def model_info(model: LoadedModel) -> pb.ModelInfo:
    plan = model.plan
    weights = plan.weights
    uri = {
        WeightsSource.PRETRAINED: weights.id or plan.variant.weights,
        # The file's name only: the server's folder layout is not a caller's business.
        WeightsSource.CHECKPOINT: weights.path.name if weights.path else "",
        WeightsSource.RANDOM: "",
    }[weights.source]
    info = pb.ModelInfo(
        name=plan.name,
        spec=plan.spec.name,
        plugin=plan.plugin,
        variant=plan.variant.name,
        task=plan.task.id,
        state=_STATES[model.state],
        weights=pb.Weights(source=_SOURCES[weights.source], uri=uri),
        instances=[
            pb.InstanceInfo(device=i.device, memory_bytes=i.memory_bytes(), busy=i.busy, completed=i.completed)
            for i in model.instances
        ],
        description=plan.spec.description,
        max_batch_size=model.runtime.max_batch_size
        if model.runtime
        else getattr(plan.task_settings, "max_batch_size", 1),
    )
    extra = model.runtime.info() if model.runtime else None
    if extra is not None:
        info.task_info.Pack(extra)
    if model.runtime is not None:
        runtime, stats = model.runtime, model.runtime.stats
        batches, mean_batch = stats.batch_sizes.count_and_mean()
        _, mean_wait = stats.queue_waits.count_and_mean()
        info.stats.CopyFrom(
            pb.ModelStats(
                active=runtime.active(),
                queued=getattr(runtime, "queued", 0),
                outputs=stats.outputs,
                output_unit=stats.output_unit,
                batches=batches,
                mean_batch_size=mean_batch,
                mean_queue_wait_ms=mean_wait * 1000,
            )
        )
    return info


def _spec_info(spec: ModelSpec) -> pb.SpecInfo:
    default = spec.variant(None).name if spec.variants else ""
    return pb.SpecInfo(
        name=spec.name,
        task=spec.task,
        description=spec.description,
        variants=[
            pb.VariantInfo(name=v.name, description=v.description, is_default=v.name == default) for v in spec.variants
        ],
    )


def _plugin_info(report: PluginReport) -> pb.PluginInfo:
    return pb.PluginInfo(
        name=report.name,
        distribution=report.distribution,
        version=report.version,
        state=_PLUGIN_STATES[report.state],
        error=report.error,
        specs=[_spec_info(s) for s in report.specs],
        tasks=[pb.TaskInfo(id=t.id, services=t.services, description=t.description) for t in report.tasks],
    )


def _load_config(request: pb.LoadModelRequest, plugins: PluginSet) -> ModelConfig:
    if not request.spec:
        raise ConfigError("LoadModel needs `spec`: the name of a registered spec (see ListPlugins)")
    fields: dict[str, object] = {"spec": request.spec, "name": request.model}
    if request.variant:
        fields["variant"] = request.variant
    if request.weights:
        fields["weights"] = request.weights
    if request.devices:
        fields["devices"] = list(request.devices)
    if request.instances_per_device:
        fields["instances_per_device"] = request.instances_per_device
    if request.HasField("settings") and request.settings_json:
        raise ConfigError("set at most one of `settings` and `settings_json`")
    if request.HasField("settings"):
        fields["settings"] = json_format.MessageToDict(request.settings)
    elif request.settings_json:
        fields["settings"] = _json_object(request.settings_json)
    if request.HasField("task_settings"):
        try:
            spec, _ = plugins.spec(request.spec)
            task = plugins.task(spec.task)
        except KeyError as e:
            raise ConfigError(e.args[0]) from None
        for key, value in _task_settings(request.task_settings, task).items():
            if key in ModelConfig.model_fields:  # a task whose settings clash with the core's: say so
                raise ConfigError(f"task_settings.{key} has the name of a model key; the task cannot take it")
            fields[key] = value
    try:
        config = ModelConfig.model_validate(fields)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid LoadModel request: {problems}") from None
    return config


def _confine(weights: str, roots: Sequence[Path]) -> None:
    """A checkpoint path named at run time must lie under a weights root (symlinks resolved).
    The answer does not depend on whether the path exists, so it tells a caller nothing
    about the server's files."""
    value = weights.strip()
    if value in ("", "pretrained", "random") or looks_like_id(value):
        return
    _confine_path(value, roots, "checkpoint paths")


def _confine_path(value: str, roots: Sequence[Path], what: str) -> None:
    path = Path(value).expanduser()
    resolved = path.resolve() if path.is_absolute() else (Path.cwd() / path).resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise PermissionDeniedError(
            f"LoadModel may name {what} only under the server's weights roots (server.weights_roots)"
        )


def _server_paths(config: ModelConfig, plugins: PluginSet) -> list[tuple[str, str]]:
    """The paths a LoadModel request names in its settings and task settings: the values of
    the fields their settings models mark :class:`~modelplex.specs.ServerPath`."""
    try:
        spec, _ = plugins.spec(config.spec)
        task = plugins.task(spec.task)
    except KeyError:
        return []  # planning refuses the spec with its own message
    named = [(f"settings.{k}", config.settings.get(k)) for k in server_path_fields(spec.settings)]
    named += [(k, config.task_settings.get(k)) for k in server_path_fields(task.settings)]
    return [(k, str(v)) for k, v in named if isinstance(v, str | os.PathLike) and str(v).strip()]


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"settings_json is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"settings_json must be a JSON object, got {type(value).__name__}")
    return value


def _task_settings(message: any_pb2.Any, task: TaskDefinition) -> dict[str, Any]:
    """The task settings message as a dict of the fields the caller set."""
    wanted = task.settings_message
    if not wanted:
        raise ConfigError(f"task {task.id!r} takes no task_settings")
    if message.TypeName() != wanted:
        raise ConfigError(f"task_settings is a {message.TypeName() or '(no type)'}; task {task.id!r} takes {wanted}")
    try:
        settings = message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(wanted))()
        if not message.Unpack(settings):
            raise ValueError("the type does not match")
    except Exception as e:  # bytes that do not parse as the message
        raise ConfigError(f"task_settings cannot be read as {wanted}: {e}") from None
    return json_format.MessageToDict(settings, preserving_proto_field_name=True)


class ModelRepositoryServicer(pb_grpc.ModelRepositoryServicer):
    def __init__(
        self,
        registry: ModelRegistry,
        *,
        allow_runtime_loading: bool,
        weights_roots: Sequence[Path] = (),
        max_models: int | None = None,
    ) -> None:
        self._registry = registry
        self._allow_loading = allow_runtime_loading
        self._roots = [Path(r).expanduser().resolve() for r in weights_roots]
        self._max_models = max_models

    @grpc_errors
    async def ListModels(self, request: pb.ListModelsRequest, context: aio.ServicerContext) -> pb.ListModelsResponse:
        models = self._registry.list()
        if request.task:
            models = [m for m in models if m.task == request.task]
        return pb.ListModelsResponse(models=[model_info(m) for m in models])

    @grpc_errors
    async def GetModel(self, request: pb.GetModelRequest, context: aio.ServicerContext) -> pb.GetModelResponse:
        return pb.GetModelResponse(model=model_info(self._registry.describe(request.model)))

    def _check_allowed(self, what: str) -> None:
        if not self._allow_loading:
            raise RuntimeLoadingDisabledError(
                f"{what} is disabled on this server (server.allow_runtime_loading = false)"
            )

    @grpc_errors
    async def LoadModel(self, request: pb.LoadModelRequest, context: aio.ServicerContext) -> pb.LoadModelResponse:
        self._check_allowed("LoadModel")
        config = _load_config(request, self._registry.plugins)
        _confine(config.weights, self._roots)
        for key, path in _server_paths(config, self._registry.plugins):
            _confine_path(path, self._roots, f"file paths ({key})")
        if self._max_models is not None and len(self._registry.list()) >= self._max_models:
            raise QueueFullError(f"{self._max_models} models are loaded (server.max_models); unload one first")
        model = await self._registry.load(config)
        return pb.LoadModelResponse(model=model_info(model))

    @grpc_errors
    async def UnloadModel(self, request: pb.UnloadModelRequest, context: aio.ServicerContext) -> pb.UnloadModelResponse:
        self._check_allowed("UnloadModel")
        await self._registry.unload(request.model)
        return pb.UnloadModelResponse()

    @grpc_errors
    async def ListPlugins(self, request: pb.ListPluginsRequest, context: aio.ServicerContext) -> pb.ListPluginsResponse:
        return pb.ListPluginsResponse(plugins=[_plugin_info(r) for r in self._registry.plugins.reports])

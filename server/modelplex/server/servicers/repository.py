"""modelplex.v1.ModelRepository over the registry and the plugin reports."""

from __future__ import annotations

from google.protobuf import json_format
from grpc import aio
from pydantic import ValidationError

from modelplex.errors import ConfigError, RuntimeLoadingDisabledError
from modelplex.server.config import ModelConfig
from modelplex.server.grpc_errors import grpc_errors
from modelplex.server.plugins import PluginReport, PluginState
from modelplex.server.registry import LoadedModel, ModelRegistry, ModelState
from modelplex.server.runtimes.classification import ClassificationRuntime
from modelplex.specs import ModelSpec, Task, WeightsSource
from modelplex_client.pb import common_pb2
from modelplex_client.pb import models_pb2 as pb
from modelplex_client.pb import models_pb2_grpc as pb_grpc

__all__ = ["ModelRepositoryServicer", "model_info"]

_TASKS = {t: common_pb2.Task.Value(t.name) for t in Task}
_STATES = {ModelState.LOADING: pb.LOADING, ModelState.READY: pb.READY, ModelState.UNLOADING: pb.UNLOADING}
_SOURCES = {
    WeightsSource.PRETRAINED: pb.PRETRAINED,
    WeightsSource.CHECKPOINT: pb.CHECKPOINT,
    WeightsSource.RANDOM: pb.RANDOM,
}
_PLUGIN_STATES = {
    PluginState.ACTIVE: pb.ACTIVE,
    PluginState.BROKEN: pb.BROKEN,
    PluginState.SKIPPED: pb.SKIPPED,
}


def model_info(model: LoadedModel) -> pb.ModelInfo:
    plan = model.plan
    weights = plan.weights
    uri = {
        WeightsSource.PRETRAINED: weights.id or plan.variant.weights,
        WeightsSource.CHECKPOINT: str(weights.path),
        WeightsSource.RANDOM: "",
    }[weights.source]
    info = pb.ModelInfo(
        name=plan.name,
        spec=plan.spec.name,
        plugin=plan.plugin,
        variant=plan.variant.name,
        task=_TASKS[plan.spec.task],
        state=_STATES[model.state],
        weights=pb.Weights(source=_SOURCES[weights.source], uri=uri),
        instances=[
            pb.InstanceInfo(device=i.device, memory_bytes=i.memory_bytes(), busy=i.busy, completed=i.completed)
            for i in model.instances
        ],
        description=plan.spec.description,
        max_batch_size=model.runtime.max_batch_size if model.runtime else plan.config.max_batch_size,
    )
    if isinstance(model.runtime, ClassificationRuntime):
        info.num_classes = model.runtime.num_classes
        info.input_shape.extend(model.runtime.input_shape)
    return info


def _spec_info(spec: ModelSpec) -> pb.SpecInfo:
    default = spec.variant(None).name if spec.variants else ""
    return pb.SpecInfo(
        name=spec.name,
        task=_TASKS[spec.task],
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
    )


def _load_config(request: pb.LoadModelRequest) -> ModelConfig:
    fields: dict[str, object] = {"spec": request.spec, "name": request.model}
    if request.variant:
        fields["variant"] = request.variant
    if request.weights:
        fields["weights"] = request.weights
    if request.devices:
        fields["devices"] = list(request.devices)
    if request.instances_per_device:
        fields["instances_per_device"] = request.instances_per_device
    if request.max_batch_size:
        fields["max_batch_size"] = request.max_batch_size
    if request.max_batch_delay_ms:
        fields["max_batch_delay_ms"] = request.max_batch_delay_ms
    if request.HasField("settings"):
        fields["settings"] = json_format.MessageToDict(request.settings)
    if not request.spec:
        raise ConfigError("LoadModel needs `spec`: the name of a registered spec (see ListPlugins)")
    try:
        return ModelConfig.model_validate(fields)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid LoadModel request: {problems}") from None


class ModelRepositoryServicer(pb_grpc.ModelRepositoryServicer):
    def __init__(self, registry: ModelRegistry, *, allow_runtime_loading: bool) -> None:
        self._registry = registry
        self._allow_loading = allow_runtime_loading

    @grpc_errors
    async def ListModels(self, request: pb.ListModelsRequest, context: aio.ServicerContext) -> pb.ListModelsResponse:
        models = self._registry.list()
        if request.task:
            models = [m for m in models if _TASKS[m.task] == request.task]
        return pb.ListModelsResponse(models=[model_info(m) for m in models])

    @grpc_errors
    async def GetModel(self, request: pb.GetModelRequest, context: aio.ServicerContext) -> pb.ModelInfo:
        return model_info(self._registry.describe(request.model))

    def _check_allowed(self, what: str) -> None:
        if not self._allow_loading:
            raise RuntimeLoadingDisabledError(
                f"{what} is disabled on this server (server.allow_runtime_loading = false)"
            )

    @grpc_errors
    async def LoadModel(self, request: pb.LoadModelRequest, context: aio.ServicerContext) -> pb.ModelInfo:
        self._check_allowed("LoadModel")
        model = await self._registry.load(_load_config(request))
        return model_info(model)

    @grpc_errors
    async def UnloadModel(self, request: pb.UnloadModelRequest, context: aio.ServicerContext) -> pb.UnloadModelResponse:
        self._check_allowed("UnloadModel")
        await self._registry.unload(request.model)
        return pb.UnloadModelResponse()

    @grpc_errors
    async def ListPlugins(self, request: pb.ListPluginsRequest, context: aio.ServicerContext) -> pb.ListPluginsResponse:
        return pb.ListPluginsResponse(plugins=[_plugin_info(r) for r in self._registry.plugins.reports])

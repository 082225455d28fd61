from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WeightsSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEIGHTS_SOURCE_UNSPECIFIED: _ClassVar[WeightsSource]
    WEIGHTS_SOURCE_PRETRAINED: _ClassVar[WeightsSource]
    WEIGHTS_SOURCE_CHECKPOINT: _ClassVar[WeightsSource]
    WEIGHTS_SOURCE_RANDOM: _ClassVar[WeightsSource]

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]
    MODEL_STATE_UNLOADING: _ClassVar[ModelState]

class PluginState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_STATE_UNSPECIFIED: _ClassVar[PluginState]
    PLUGIN_STATE_ACTIVE: _ClassVar[PluginState]
    PLUGIN_STATE_BROKEN: _ClassVar[PluginState]
    PLUGIN_STATE_SKIPPED: _ClassVar[PluginState]
WEIGHTS_SOURCE_UNSPECIFIED: WeightsSource
WEIGHTS_SOURCE_PRETRAINED: WeightsSource
WEIGHTS_SOURCE_CHECKPOINT: WeightsSource
WEIGHTS_SOURCE_RANDOM: WeightsSource
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_FAILED: ModelState
MODEL_STATE_UNLOADING: ModelState
PLUGIN_STATE_UNSPECIFIED: PluginState
PLUGIN_STATE_ACTIVE: PluginState
PLUGIN_STATE_BROKEN: PluginState
PLUGIN_STATE_SKIPPED: PluginState

class Weights(_message.Message):
    __slots__ = ("source", "uri")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    source: WeightsSource
    uri: str
    def __init__(self, source: _Optional[_Union[WeightsSource, str]] = ..., uri: _Optional[str] = ...) -> None: ...

class InstanceInfo(_message.Message):
    __slots__ = ("device", "memory_bytes", "busy", "completed")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    device: str
    memory_bytes: int
    busy: int
    completed: int
    def __init__(self, device: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., busy: _Optional[int] = ..., completed: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "spec", "plugin", "variant", "task", "state", "weights", "instances", "error", "max_batch_size", "description", "task_info", "stats")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TASK_INFO_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: str
    plugin: str
    variant: str
    task: str
    state: ModelState
    weights: Weights
    instances: _containers.RepeatedCompositeFieldContainer[InstanceInfo]
    error: str
    max_batch_size: int
    description: str
    task_info: _any_pb2.Any
    stats: ModelStats
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[str] = ..., plugin: _Optional[str] = ..., variant: _Optional[str] = ..., task: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., weights: _Optional[_Union[Weights, _Mapping]] = ..., instances: _Optional[_Iterable[_Union[InstanceInfo, _Mapping]]] = ..., error: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., description: _Optional[str] = ..., task_info: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., stats: _Optional[_Union[ModelStats, _Mapping]] = ...) -> None: ...

class ModelStats(_message.Message):
    __slots__ = ("active", "queued", "outputs", "output_unit", "batches", "mean_batch_size", "mean_queue_wait_ms")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_UNIT_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    MEAN_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MEAN_QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    active: int
    queued: int
    outputs: int
    output_unit: str
    batches: int
    mean_batch_size: float
    mean_queue_wait_ms: float
    def __init__(self, active: _Optional[int] = ..., queued: _Optional[int] = ..., outputs: _Optional[int] = ..., output_unit: _Optional[str] = ..., batches: _Optional[int] = ..., mean_batch_size: _Optional[float] = ..., mean_queue_wait_ms: _Optional[float] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: str
    def __init__(self, task: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("model", "spec", "variant", "weights", "devices", "instances_per_device", "settings", "settings_json", "task_settings")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_PER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    TASK_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    spec: str
    variant: str
    weights: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    instances_per_device: int
    settings: _struct_pb2.Struct
    settings_json: str
    task_settings: _any_pb2.Any
    def __init__(self, model: _Optional[str] = ..., spec: _Optional[str] = ..., variant: _Optional[str] = ..., weights: _Optional[str] = ..., devices: _Optional[_Iterable[str]] = ..., instances_per_device: _Optional[int] = ..., settings: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., settings_json: _Optional[str] = ..., task_settings: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPluginsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VariantInfo(_message.Message):
    __slots__ = ("name", "description", "is_default")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    is_default: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., is_default: _Optional[bool] = ...) -> None: ...

class SpecInfo(_message.Message):
    __slots__ = ("name", "task", "description", "variants")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: str
    description: str
    variants: _containers.RepeatedCompositeFieldContainer[VariantInfo]
    def __init__(self, name: _Optional[str] = ..., task: _Optional[str] = ..., description: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[VariantInfo, _Mapping]]] = ...) -> None: ...

class PluginInfo(_message.Message):
    __slots__ = ("name", "distribution", "version", "state", "error", "specs", "tasks")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    distribution: str
    version: str
    state: PluginState
    error: str
    specs: _containers.RepeatedCompositeFieldContainer[SpecInfo]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskInfo]
    def __init__(self, name: _Optional[str] = ..., distribution: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[_Union[PluginState, str]] = ..., error: _Optional[str] = ..., specs: _Optional[_Iterable[_Union[SpecInfo, _Mapping]]] = ..., tasks: _Optional[_Iterable[_Union[TaskInfo, _Mapping]]] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("id", "services", "description")
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    services: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, id: _Optional[str] = ..., services: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class ListPluginsResponse(_message.Message):
    __slots__ = ("plugins",)
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    plugins: _containers.RepeatedCompositeFieldContainer[PluginInfo]
    def __init__(self, plugins: _Optional[_Iterable[_Union[PluginInfo, _Mapping]]] = ...) -> None: ...

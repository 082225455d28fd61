from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    IMAGE_CLASSIFICATION: _ClassVar[Task]
    TEXT_GENERATION: _ClassVar[Task]
    SPEECH_RECOGNITION: _ClassVar[Task]
    SPEECH_SYNTHESIS: _ClassVar[Task]
    IMAGE_GENERATION: _ClassVar[Task]

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    FLOAT32: _ClassVar[DataType]
    FLOAT16: _ClassVar[DataType]
    BFLOAT16: _ClassVar[DataType]
    UINT8: _ClassVar[DataType]
    INT64: _ClassVar[DataType]
TASK_UNSPECIFIED: Task
IMAGE_CLASSIFICATION: Task
TEXT_GENERATION: Task
SPEECH_RECOGNITION: Task
SPEECH_SYNTHESIS: Task
IMAGE_GENERATION: Task
DATA_TYPE_UNSPECIFIED: DataType
FLOAT32: DataType
FLOAT16: DataType
BFLOAT16: DataType
UINT8: DataType
INT64: DataType

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DataType
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DataType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

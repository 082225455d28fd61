from modelplex_client.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_FLOAT32: _ClassVar[ImageFormat]

class InterpolationMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERPOLATION_METHOD_UNSPECIFIED: _ClassVar[InterpolationMethod]
    INTERPOLATION_METHOD_SLERP: _ClassVar[InterpolationMethod]
    INTERPOLATION_METHOD_LINEAR: _ClassVar[InterpolationMethod]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_FLOAT32: ImageFormat
INTERPOLATION_METHOD_UNSPECIFIED: InterpolationMethod
INTERPOLATION_METHOD_SLERP: InterpolationMethod
INTERPOLATION_METHOD_LINEAR: InterpolationMethod

class ImageOutput(_message.Message):
    __slots__ = ("format", "jpeg_quality")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    jpeg_quality: int
    def __init__(self, format: _Optional[_Union[ImageFormat, str]] = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class ImageGenerationGenerateRequest(_message.Message):
    __slots__ = ("model", "request_id", "num_images", "seed", "class_index", "class_name", "truncation", "latent", "output")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_IMAGES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    num_images: int
    seed: int
    class_index: int
    class_name: str
    truncation: float
    latent: _containers.RepeatedScalarFieldContainer[float]
    output: ImageOutput
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., num_images: _Optional[int] = ..., seed: _Optional[int] = ..., class_index: _Optional[int] = ..., class_name: _Optional[str] = ..., truncation: _Optional[float] = ..., latent: _Optional[_Iterable[float]] = ..., output: _Optional[_Union[ImageOutput, _Mapping]] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("format", "width", "height", "channels", "encoded", "tensor")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    width: int
    height: int
    channels: int
    encoded: bytes
    tensor: _common_pb2.Tensor
    def __init__(self, format: _Optional[_Union[ImageFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., encoded: _Optional[bytes] = ..., tensor: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ImageGenerationGenerateResponse(_message.Message):
    __slots__ = ("request_id", "model", "index", "seed", "class_index", "class_name", "image")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    index: int
    seed: int
    class_index: int
    class_name: str
    image: GeneratedImage
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., index: _Optional[int] = ..., seed: _Optional[int] = ..., class_index: _Optional[int] = ..., class_name: _Optional[str] = ..., image: _Optional[_Union[GeneratedImage, _Mapping]] = ...) -> None: ...

class InterpolationEndpoint(_message.Message):
    __slots__ = ("seed", "latent")
    SEED_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    seed: int
    latent: LatentVector
    def __init__(self, seed: _Optional[int] = ..., latent: _Optional[_Union[LatentVector, _Mapping]] = ...) -> None: ...

class LatentVector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class InterpolateRequest(_message.Message):
    __slots__ = ("model", "request_id", "num_images", "start", "end", "method", "seed", "class_index", "class_name", "truncation", "output")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_IMAGES_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    num_images: int
    start: InterpolationEndpoint
    end: InterpolationEndpoint
    method: InterpolationMethod
    seed: int
    class_index: int
    class_name: str
    truncation: float
    output: ImageOutput
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., num_images: _Optional[int] = ..., start: _Optional[_Union[InterpolationEndpoint, _Mapping]] = ..., end: _Optional[_Union[InterpolationEndpoint, _Mapping]] = ..., method: _Optional[_Union[InterpolationMethod, str]] = ..., seed: _Optional[int] = ..., class_index: _Optional[int] = ..., class_name: _Optional[str] = ..., truncation: _Optional[float] = ..., output: _Optional[_Union[ImageOutput, _Mapping]] = ...) -> None: ...

class InterpolateResponse(_message.Message):
    __slots__ = ("request_id", "model", "index", "t", "seed", "class_index", "class_name", "image")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    index: int
    t: float
    seed: int
    class_index: int
    class_name: str
    image: GeneratedImage
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., index: _Optional[int] = ..., t: _Optional[float] = ..., seed: _Optional[int] = ..., class_index: _Optional[int] = ..., class_name: _Optional[str] = ..., image: _Optional[_Union[GeneratedImage, _Mapping]] = ...) -> None: ...

class ImageGenerationInfo(_message.Message):
    __slots__ = ("latent_size", "channels", "height", "width", "num_classes", "default_truncation", "max_images_per_request", "family", "class_names")
    LATENT_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    latent_size: int
    channels: int
    height: int
    width: int
    num_classes: int
    default_truncation: float
    max_images_per_request: int
    family: str
    class_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, latent_size: _Optional[int] = ..., channels: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., num_classes: _Optional[int] = ..., default_truncation: _Optional[float] = ..., max_images_per_request: _Optional[int] = ..., family: _Optional[str] = ..., class_names: _Optional[_Iterable[str]] = ...) -> None: ...

class ImageGenerationSettings(_message.Message):
    __slots__ = ("max_batch_size", "max_batch_delay_ms", "max_queue_size", "max_images_per_request", "pad_batches")
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    PAD_BATCHES_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    max_batch_delay_ms: float
    max_queue_size: int
    max_images_per_request: int
    pad_batches: bool
    def __init__(self, max_batch_size: _Optional[int] = ..., max_batch_delay_ms: _Optional[float] = ..., max_queue_size: _Optional[int] = ..., max_images_per_request: _Optional[int] = ..., pad_batches: _Optional[bool] = ...) -> None: ...

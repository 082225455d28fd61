from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetectRequest(_message.Message):
    __slots__ = ("model", "request_id", "images", "score_threshold", "max_detections")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    images: _containers.RepeatedScalarFieldContainer[bytes]
    score_threshold: float
    max_detections: int
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., images: _Optional[_Iterable[bytes]] = ..., score_threshold: _Optional[float] = ..., max_detections: _Optional[int] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("x_min", "y_min", "x_max", "y_max")
    X_MIN_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_FIELD_NUMBER: _ClassVar[int]
    X_MAX_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_FIELD_NUMBER: _ClassVar[int]
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    def __init__(self, x_min: _Optional[float] = ..., y_min: _Optional[float] = ..., x_max: _Optional[float] = ..., y_max: _Optional[float] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("box", "label_index", "label", "score")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LABEL_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    box: BoundingBox
    label_index: int
    label: str
    score: float
    def __init__(self, box: _Optional[_Union[BoundingBox, _Mapping]] = ..., label_index: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Detections(_message.Message):
    __slots__ = ("detections",)
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    def __init__(self, detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("request_id", "model", "results")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    results: _containers.RepeatedCompositeFieldContainer[Detections]
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Detections, _Mapping]]] = ...) -> None: ...

class ObjectDetectionInfo(_message.Message):
    __slots__ = ("num_classes", "max_images_per_request", "max_detections", "min_score")
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    num_classes: int
    max_images_per_request: int
    max_detections: int
    min_score: float
    def __init__(self, num_classes: _Optional[int] = ..., max_images_per_request: _Optional[int] = ..., max_detections: _Optional[int] = ..., min_score: _Optional[float] = ...) -> None: ...

class ObjectDetectionSettings(_message.Message):
    __slots__ = ("max_batch_size", "max_batch_delay_ms", "max_queue_size", "max_images_per_request")
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    max_batch_delay_ms: float
    max_queue_size: int
    max_images_per_request: int
    def __init__(self, max_batch_size: _Optional[int] = ..., max_batch_delay_ms: _Optional[float] = ..., max_queue_size: _Optional[int] = ..., max_images_per_request: _Optional[int] = ...) -> None: ...

from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SynthesisEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SYNTHESIS_ENCODING_UNSPECIFIED: _ClassVar[SynthesisEncoding]
    SYNTHESIS_ENCODING_LINEAR16: _ClassVar[SynthesisEncoding]
    SYNTHESIS_ENCODING_FLOAT32: _ClassVar[SynthesisEncoding]
SYNTHESIS_ENCODING_UNSPECIFIED: SynthesisEncoding
SYNTHESIS_ENCODING_LINEAR16: SynthesisEncoding
SYNTHESIS_ENCODING_FLOAT32: SynthesisEncoding

class SynthesizeRequest(_message.Message):
    __slots__ = ("model", "request_id", "text", "encoding", "sample_rate_hz", "speaking_rate")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SPEAKING_RATE_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    text: str
    encoding: SynthesisEncoding
    sample_rate_hz: int
    speaking_rate: float
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., text: _Optional[str] = ..., encoding: _Optional[_Union[SynthesisEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., speaking_rate: _Optional[float] = ...) -> None: ...

class SynthesizeWavRequest(_message.Message):
    __slots__ = ("model", "request_id", "text", "encoding", "sample_rate_hz", "speaking_rate")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SPEAKING_RATE_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    text: str
    encoding: SynthesisEncoding
    sample_rate_hz: int
    speaking_rate: float
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., text: _Optional[str] = ..., encoding: _Optional[_Union[SynthesisEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., speaking_rate: _Optional[float] = ...) -> None: ...

class SynthesisAudioFormat(_message.Message):
    __slots__ = ("encoding", "sample_rate_hz", "channels", "model_sample_rate_hz")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    encoding: SynthesisEncoding
    sample_rate_hz: int
    channels: int
    model_sample_rate_hz: int
    def __init__(self, encoding: _Optional[_Union[SynthesisEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., channels: _Optional[int] = ..., model_sample_rate_hz: _Optional[int] = ...) -> None: ...

class SynthesisAudioChunk(_message.Message):
    __slots__ = ("audio_content", "text_start", "text_end", "sentence_index", "sample_offset", "sentence_end")
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    TEXT_START_FIELD_NUMBER: _ClassVar[int]
    TEXT_END_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_END_FIELD_NUMBER: _ClassVar[int]
    audio_content: bytes
    text_start: int
    text_end: int
    sentence_index: int
    sample_offset: int
    sentence_end: bool
    def __init__(self, audio_content: _Optional[bytes] = ..., text_start: _Optional[int] = ..., text_end: _Optional[int] = ..., sentence_index: _Optional[int] = ..., sample_offset: _Optional[int] = ..., sentence_end: _Optional[bool] = ...) -> None: ...

class SynthesisSummary(_message.Message):
    __slots__ = ("audio_seconds", "processing_seconds", "characters_dropped", "characters_normalized", "dropped_characters", "sentences", "time_to_first_audio_ms", "samples")
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    audio_seconds: float
    processing_seconds: float
    characters_dropped: int
    characters_normalized: int
    dropped_characters: str
    sentences: int
    time_to_first_audio_ms: float
    samples: int
    def __init__(self, audio_seconds: _Optional[float] = ..., processing_seconds: _Optional[float] = ..., characters_dropped: _Optional[int] = ..., characters_normalized: _Optional[int] = ..., dropped_characters: _Optional[str] = ..., sentences: _Optional[int] = ..., time_to_first_audio_ms: _Optional[float] = ..., samples: _Optional[int] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("request_id", "model", "format", "audio", "summary")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    format: SynthesisAudioFormat
    audio: SynthesisAudioChunk
    summary: SynthesisSummary
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., format: _Optional[_Union[SynthesisAudioFormat, _Mapping]] = ..., audio: _Optional[_Union[SynthesisAudioChunk, _Mapping]] = ..., summary: _Optional[_Union[SynthesisSummary, _Mapping]] = ...) -> None: ...

class SynthesizeWavResponse(_message.Message):
    __slots__ = ("request_id", "model", "wav", "format", "summary")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WAV_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    wav: bytes
    format: SynthesisAudioFormat
    summary: SynthesisSummary
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., wav: _Optional[bytes] = ..., format: _Optional[_Union[SynthesisAudioFormat, _Mapping]] = ..., summary: _Optional[_Union[SynthesisSummary, _Mapping]] = ...) -> None: ...

class SpeechSynthesisInfo(_message.Message):
    __slots__ = ("sample_rate_hz", "max_text_chars", "supports_speaking_rate", "max_sentence_chars", "description")
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_SPEAKING_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_SENTENCE_CHARS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    sample_rate_hz: int
    max_text_chars: int
    supports_speaking_rate: bool
    max_sentence_chars: int
    description: str
    def __init__(self, sample_rate_hz: _Optional[int] = ..., max_text_chars: _Optional[int] = ..., supports_speaking_rate: _Optional[bool] = ..., max_sentence_chars: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class SpeechSynthesisSettings(_message.Message):
    __slots__ = ("max_batch_size", "max_queue_size", "max_text_chars", "max_sentence_chars", "sentence_pause_ms")
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_SENTENCE_CHARS_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_PAUSE_MS_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    max_queue_size: int
    max_text_chars: int
    max_sentence_chars: int
    sentence_pause_ms: int
    def __init__(self, max_batch_size: _Optional[int] = ..., max_queue_size: _Optional[int] = ..., max_text_chars: _Optional[int] = ..., max_sentence_chars: _Optional[int] = ..., sentence_pause_ms: _Optional[int] = ...) -> None: ...

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecognitionConfig(_message.Message):
    __slots__ = ("encoding", "sample_rate_hz", "audio_channel_count", "enable_word_time_offsets", "language")
    class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AUDIO_ENCODING_UNSPECIFIED: _ClassVar[RecognitionConfig.AudioEncoding]
        AUDIO_ENCODING_LINEAR16: _ClassVar[RecognitionConfig.AudioEncoding]
        AUDIO_ENCODING_FLOAT32: _ClassVar[RecognitionConfig.AudioEncoding]
        AUDIO_ENCODING_FILE: _ClassVar[RecognitionConfig.AudioEncoding]
    AUDIO_ENCODING_UNSPECIFIED: RecognitionConfig.AudioEncoding
    AUDIO_ENCODING_LINEAR16: RecognitionConfig.AudioEncoding
    AUDIO_ENCODING_FLOAT32: RecognitionConfig.AudioEncoding
    AUDIO_ENCODING_FILE: RecognitionConfig.AudioEncoding
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CHANNEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENABLE_WORD_TIME_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    encoding: RecognitionConfig.AudioEncoding
    sample_rate_hz: int
    audio_channel_count: int
    enable_word_time_offsets: bool
    language: str
    def __init__(self, encoding: _Optional[_Union[RecognitionConfig.AudioEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., audio_channel_count: _Optional[int] = ..., enable_word_time_offsets: _Optional[bool] = ..., language: _Optional[str] = ...) -> None: ...

class StreamingRecognitionConfig(_message.Message):
    __slots__ = ("model", "request_id", "config", "interim_results", "single_utterance")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    SINGLE_UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    config: RecognitionConfig
    interim_results: bool
    single_utterance: bool
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., interim_results: _Optional[bool] = ..., single_utterance: _Optional[bool] = ...) -> None: ...

class StreamingRecognizeRequest(_message.Message):
    __slots__ = ("streaming_config", "audio_content")
    STREAMING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    streaming_config: StreamingRecognitionConfig
    audio_content: bytes
    def __init__(self, streaming_config: _Optional[_Union[StreamingRecognitionConfig, _Mapping]] = ..., audio_content: _Optional[bytes] = ...) -> None: ...

class WordInfo(_message.Message):
    __slots__ = ("word", "start_ms", "end_ms")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    word: str
    start_ms: float
    end_ms: float
    def __init__(self, word: _Optional[str] = ..., start_ms: _Optional[float] = ..., end_ms: _Optional[float] = ...) -> None: ...

class SpeechRecognitionAlternative(_message.Message):
    __slots__ = ("transcript", "confidence", "words")
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    transcript: str
    confidence: float
    words: _containers.RepeatedCompositeFieldContainer[WordInfo]
    def __init__(self, transcript: _Optional[str] = ..., confidence: _Optional[float] = ..., words: _Optional[_Iterable[_Union[WordInfo, _Mapping]]] = ...) -> None: ...

class StreamingRecognitionResult(_message.Message):
    __slots__ = ("alternatives", "is_final", "stability", "result_start_ms", "result_end_ms", "segment_index", "language")
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    STABILITY_FIELD_NUMBER: _ClassVar[int]
    RESULT_START_MS_FIELD_NUMBER: _ClassVar[int]
    RESULT_END_MS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    alternatives: _containers.RepeatedCompositeFieldContainer[SpeechRecognitionAlternative]
    is_final: bool
    stability: float
    result_start_ms: float
    result_end_ms: float
    segment_index: int
    language: str
    def __init__(self, alternatives: _Optional[_Iterable[_Union[SpeechRecognitionAlternative, _Mapping]]] = ..., is_final: _Optional[bool] = ..., stability: _Optional[float] = ..., result_start_ms: _Optional[float] = ..., result_end_ms: _Optional[float] = ..., segment_index: _Optional[int] = ..., language: _Optional[str] = ...) -> None: ...

class StreamingRecognizeResponse(_message.Message):
    __slots__ = ("request_id", "model", "results", "speech_event_type", "audio_processed_ms")
    class SpeechEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SPEECH_EVENT_TYPE_UNSPECIFIED: _ClassVar[StreamingRecognizeResponse.SpeechEventType]
        SPEECH_EVENT_TYPE_END_OF_SINGLE_UTTERANCE: _ClassVar[StreamingRecognizeResponse.SpeechEventType]
    SPEECH_EVENT_TYPE_UNSPECIFIED: StreamingRecognizeResponse.SpeechEventType
    SPEECH_EVENT_TYPE_END_OF_SINGLE_UTTERANCE: StreamingRecognizeResponse.SpeechEventType
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_PROCESSED_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    results: _containers.RepeatedCompositeFieldContainer[StreamingRecognitionResult]
    speech_event_type: StreamingRecognizeResponse.SpeechEventType
    audio_processed_ms: float
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., results: _Optional[_Iterable[_Union[StreamingRecognitionResult, _Mapping]]] = ..., speech_event_type: _Optional[_Union[StreamingRecognizeResponse.SpeechEventType, str]] = ..., audio_processed_ms: _Optional[float] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("model", "request_id", "config", "audio_content")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    config: RecognitionConfig
    audio_content: bytes
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio_content: _Optional[bytes] = ...) -> None: ...

class SpeechRecognitionResult(_message.Message):
    __slots__ = ("alternatives", "result_start_ms", "result_end_ms", "segment_index", "language")
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    RESULT_START_MS_FIELD_NUMBER: _ClassVar[int]
    RESULT_END_MS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    alternatives: _containers.RepeatedCompositeFieldContainer[SpeechRecognitionAlternative]
    result_start_ms: float
    result_end_ms: float
    segment_index: int
    language: str
    def __init__(self, alternatives: _Optional[_Iterable[_Union[SpeechRecognitionAlternative, _Mapping]]] = ..., result_start_ms: _Optional[float] = ..., result_end_ms: _Optional[float] = ..., segment_index: _Optional[int] = ..., language: _Optional[str] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("request_id", "model", "results", "audio_duration_ms", "total_time_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    results: _containers.RepeatedCompositeFieldContainer[SpeechRecognitionResult]
    audio_duration_ms: float
    total_time_ms: float
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., results: _Optional[_Iterable[_Union[SpeechRecognitionResult, _Mapping]]] = ..., audio_duration_ms: _Optional[float] = ..., total_time_ms: _Optional[float] = ...) -> None: ...

class SpeechRecognitionInfo(_message.Message):
    __slots__ = ("sample_rate_hz", "streaming", "languages", "window_ms", "left_context_ms", "lookahead_ms", "interim_interval_ms", "max_segment_ms", "max_audio_ms", "vad", "labels", "decoder")
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    LEFT_CONTEXT_MS_FIELD_NUMBER: _ClassVar[int]
    LOOKAHEAD_MS_FIELD_NUMBER: _ClassVar[int]
    INTERIM_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEGMENT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    VAD_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DECODER_FIELD_NUMBER: _ClassVar[int]
    sample_rate_hz: int
    streaming: bool
    languages: _containers.RepeatedScalarFieldContainer[str]
    window_ms: float
    left_context_ms: float
    lookahead_ms: float
    interim_interval_ms: float
    max_segment_ms: float
    max_audio_ms: float
    vad: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    decoder: str
    def __init__(self, sample_rate_hz: _Optional[int] = ..., streaming: _Optional[bool] = ..., languages: _Optional[_Iterable[str]] = ..., window_ms: _Optional[float] = ..., left_context_ms: _Optional[float] = ..., lookahead_ms: _Optional[float] = ..., interim_interval_ms: _Optional[float] = ..., max_segment_ms: _Optional[float] = ..., max_audio_ms: _Optional[float] = ..., vad: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., decoder: _Optional[str] = ...) -> None: ...

class SpeechRecognitionSettings(_message.Message):
    __slots__ = ("max_batch_size", "max_queue_size", "max_audio_s", "max_chunk_bytes", "max_segment_s", "vad", "min_silence_ms", "window_ms", "left_context_ms", "lookahead_ms", "interim_interval_ms", "speech_pad_ms", "decoder", "lexicon", "lm", "beam_size", "beam_threshold", "lm_weight", "word_score")
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_AUDIO_S_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SEGMENT_S_FIELD_NUMBER: _ClassVar[int]
    VAD_FIELD_NUMBER: _ClassVar[int]
    MIN_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    LEFT_CONTEXT_MS_FIELD_NUMBER: _ClassVar[int]
    LOOKAHEAD_MS_FIELD_NUMBER: _ClassVar[int]
    INTERIM_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_PAD_MS_FIELD_NUMBER: _ClassVar[int]
    DECODER_FIELD_NUMBER: _ClassVar[int]
    LEXICON_FIELD_NUMBER: _ClassVar[int]
    LM_FIELD_NUMBER: _ClassVar[int]
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    BEAM_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LM_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    WORD_SCORE_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    max_queue_size: int
    max_audio_s: float
    max_chunk_bytes: int
    max_segment_s: float
    vad: str
    min_silence_ms: float
    window_ms: float
    left_context_ms: float
    lookahead_ms: float
    interim_interval_ms: float
    speech_pad_ms: float
    decoder: str
    lexicon: str
    lm: str
    beam_size: int
    beam_threshold: float
    lm_weight: float
    word_score: float
    def __init__(self, max_batch_size: _Optional[int] = ..., max_queue_size: _Optional[int] = ..., max_audio_s: _Optional[float] = ..., max_chunk_bytes: _Optional[int] = ..., max_segment_s: _Optional[float] = ..., vad: _Optional[str] = ..., min_silence_ms: _Optional[float] = ..., window_ms: _Optional[float] = ..., left_context_ms: _Optional[float] = ..., lookahead_ms: _Optional[float] = ..., interim_interval_ms: _Optional[float] = ..., speech_pad_ms: _Optional[float] = ..., decoder: _Optional[str] = ..., lexicon: _Optional[str] = ..., lm: _Optional[str] = ..., beam_size: _Optional[int] = ..., beam_threshold: _Optional[float] = ..., lm_weight: _Optional[float] = ..., word_score: _Optional[float] = ...) -> None: ...

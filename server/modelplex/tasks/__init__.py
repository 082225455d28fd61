"""The tasks: the interface a plugin's model implements, one small ABC per task.

Every method of a task interface is called by the server on the instance's own
worker thread, never on the event loop, so it may block (run torch ops, read files).
Each task is a package (:mod:`.classification`, :mod:`.text_generation`) holding its
interface, settings, runtime, servicer and definition; this module re-exports the
interfaces only, and imports no runtime, grpc or torch.
"""

from __future__ import annotations

from modelplex.tasks.base import TaskModel
from modelplex.tasks.classification import (
    ClassificationMeta,
    ClassScore,
    EncodedImage,
    ImageClassifier,
    ImagePreprocessing,
    RawTensor,
)
from modelplex.tasks.image_generation import (
    ImageGenerationMeta,
    ImageGenerator,
    ImageInput,
    truncated_normal,
)
from modelplex.tasks.speech_recognition import (
    CTCRecognizer,
    SegmentRecognizer,
    SpeechRecognitionMeta,
    SpeechRecognizer,
    Transcript,
    Word,
)
from modelplex.tasks.speech_synthesis import (
    AudioPiece,
    PreparedText,
    SpeechSynthesisMeta,
    SpeechSynthesizer,
    SynthesisOptions,
)
from modelplex.tasks.text_generation import (
    ChatMessage,
    NextToken,
    SamplingParams,
    TextGenerationMeta,
    TextGenerator,
    TopLogprob,
)

__all__ = [
    "AudioPiece",
    "CTCRecognizer",
    "ChatMessage",
    "ClassScore",
    "ClassificationMeta",
    "EncodedImage",
    "ImageClassifier",
    "ImageGenerationMeta",
    "ImageGenerator",
    "ImageInput",
    "ImagePreprocessing",
    "NextToken",
    "PreparedText",
    "RawTensor",
    "SamplingParams",
    "SegmentRecognizer",
    "SpeechRecognitionMeta",
    "SpeechRecognizer",
    "SpeechSynthesisMeta",
    "SpeechSynthesizer",
    "SynthesisOptions",
    "TaskModel",
    "TextGenerationMeta",
    "TextGenerator",
    "TopLogprob",
    "Transcript",
    "Word",
    "truncated_normal",
]

"""The speech-recognition task: the interfaces and value types a plugin uses.

The runtime (sessions on the shared step scheduler), servicer, audio handling, voice
activity detection and settings are in the submodules, imported by the task's definition
(:mod:`modelplex.tasks.speech_recognition.task`) when the server discovers it.
"""

from modelplex.tasks.speech_recognition.interface import (
    CTCRecognizer,
    SegmentRecognizer,
    SpeechRecognitionMeta,
    SpeechRecognizer,
    Transcript,
    Word,
)

__all__ = ["CTCRecognizer", "SegmentRecognizer", "SpeechRecognitionMeta", "SpeechRecognizer", "Transcript", "Word"]

"""The speech-synthesis task: the interface and value types a plugin uses.

The runtime (sentences of concurrent calls stepped together on the shared step
scheduler), servicer, settings and the audio helpers are in the submodules, imported by
the task's definition (:mod:`modelplex.tasks.speech_synthesis.task`) when the server
discovers it. :mod:`.offline` synthesizes in process with the server's own code.
"""

from modelplex.tasks.speech_synthesis.interface import (
    AudioPiece,
    PreparedText,
    SpeechSynthesisMeta,
    SpeechSynthesizer,
    SynthesisOptions,
)

__all__ = ["AudioPiece", "PreparedText", "SpeechSynthesisMeta", "SpeechSynthesizer", "SynthesisOptions"]

"""The speech-recognition task's definition, registered by :mod:`modelplex.tasks.plugin`."""

from __future__ import annotations

from modelplex.taskdef import TaskDefinition
from modelplex.tasks.speech_recognition.conformance import PROBES
from modelplex.tasks.speech_recognition.interface import SpeechRecognitionMeta, SpeechRecognizer
from modelplex.tasks.speech_recognition.oip import SpeechRecognitionOip
from modelplex.tasks.speech_recognition.runtime import SpeechRecognitionRuntime
from modelplex.tasks.speech_recognition.servicer import add_servicers
from modelplex.tasks.speech_recognition.settings import SpeechRecognitionSettings
from modelplex_client.pb import speech_recognition_pb2 as pb

__all__ = ["TASK"]

TASK = TaskDefinition(
    id="speech_recognition",
    interface=SpeechRecognizer,
    services=(pb.DESCRIPTOR.services_by_name["SpeechRecognition"].full_name,),
    add_servicers=add_servicers,
    runtime=SpeechRecognitionRuntime,
    settings=SpeechRecognitionSettings,
    settings_message=pb.SpeechRecognitionSettings.DESCRIPTOR.full_name,
    meta=SpeechRecognitionMeta,
    conformance=PROBES,
    oip=SpeechRecognitionOip(),
    description="Live audio in, interim and final transcripts out (streams stepped together); whole clips too.",
)

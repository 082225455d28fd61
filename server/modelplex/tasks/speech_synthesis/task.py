"""The speech-synthesis task's definition, registered by :mod:`modelplex.tasks.plugin`."""

from __future__ import annotations

from modelplex.taskdef import TaskDefinition
from modelplex.tasks.speech_synthesis.conformance import PROBES
from modelplex.tasks.speech_synthesis.interface import SpeechSynthesisMeta, SpeechSynthesizer
from modelplex.tasks.speech_synthesis.oip import SpeechSynthesisOip
from modelplex.tasks.speech_synthesis.runtime import SpeechSynthesisRuntime
from modelplex.tasks.speech_synthesis.servicer import add_servicers
from modelplex.tasks.speech_synthesis.settings import SpeechSynthesisSettings
from modelplex_client.pb import speech_synthesis_pb2 as pb

__all__ = ["TASK"]

TASK = TaskDefinition(
    id="speech_synthesis",
    interface=SpeechSynthesizer,
    services=(pb.DESCRIPTOR.services_by_name["SpeechSynthesis"].full_name,),
    add_servicers=add_servicers,
    runtime=SpeechSynthesisRuntime,
    settings=SpeechSynthesisSettings,
    settings_message=pb.SpeechSynthesisSettings.DESCRIPTOR.full_name,
    meta=SpeechSynthesisMeta,
    conformance=PROBES,
    oip=SpeechSynthesisOip(),
    description="A text in, its speech streamed sentence by sentence (sentences of concurrent calls batched).",
)

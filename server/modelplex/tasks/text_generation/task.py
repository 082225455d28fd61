"""The text-generation task's definition, registered by :mod:`modelplex.tasks.plugin`."""

from __future__ import annotations

from typing import Any

from modelplex.taskdef import FrontDoor, TaskDefinition
from modelplex.tasks.text_generation.conformance import PROBES
from modelplex.tasks.text_generation.interface import TextGenerationMeta, TextGenerator
from modelplex.tasks.text_generation.oip import TextGenerationOip
from modelplex.tasks.text_generation.runtime import TextGenerationRuntime
from modelplex.tasks.text_generation.servicer import add_servicers
from modelplex.tasks.text_generation.settings import TextGenerationSettings
from modelplex_client.pb import text_generation_pb2 as pb

__all__ = ["TASK"]


def _openai_door(models: Any, auth: Any) -> Any:
    from modelplex.tasks.text_generation.openai_door import OpenAIServer  # starlette: only when used

    return OpenAIServer(models=models, auth=auth)


TASK = TaskDefinition(
    id="text_generation",
    interface=TextGenerator,
    services=(pb.DESCRIPTOR.services_by_name["TextGeneration"].full_name,),
    add_servicers=add_servicers,
    runtime=TextGenerationRuntime,
    settings=TextGenerationSettings,
    settings_message=pb.TextGenerationSettings.DESCRIPTOR.full_name,
    meta=TextGenerationMeta,
    conformance=PROBES,
    oip=TextGenerationOip(),
    front_door=FrontDoor("openai", _openai_door),
    description="A prompt in, its continuation streamed token by token (continuous batching).",
)

"""The image-generation task's definition, registered by :mod:`modelplex.tasks.plugin`."""

from __future__ import annotations

from modelplex.taskdef import TaskDefinition
from modelplex.tasks.image_generation.conformance import PROBES
from modelplex.tasks.image_generation.interface import ImageGenerationMeta, ImageGenerator
from modelplex.tasks.image_generation.oip import ImageGenerationOip
from modelplex.tasks.image_generation.runtime import ImageGenerationRuntime
from modelplex.tasks.image_generation.servicer import add_servicers
from modelplex.tasks.image_generation.settings import ImageGenerationSettings
from modelplex_client.pb import image_generation_pb2 as pb

__all__ = ["TASK"]

TASK = TaskDefinition(
    id="image_generation",
    interface=ImageGenerator,
    services=(pb.DESCRIPTOR.services_by_name["ImageGeneration"].full_name,),
    add_servicers=add_servicers,
    runtime=ImageGenerationRuntime,
    settings=ImageGenerationSettings,
    settings_message=pb.ImageGenerationSettings.DESCRIPTOR.full_name,
    meta=ImageGenerationMeta,
    conformance=PROBES,
    oip=ImageGenerationOip(),
    description="Images from seeds, classes or latents, streamed one per message (dynamic batching).",
)

"""The image-classification task's definition, registered by :mod:`modelplex.tasks.plugin`."""

from __future__ import annotations

from modelplex.taskdef import TaskDefinition
from modelplex.tasks.classification.conformance import PROBES
from modelplex.tasks.classification.interface import ClassificationMeta, ImageClassifier
from modelplex.tasks.classification.oip import ClassificationOip
from modelplex.tasks.classification.runtime import ClassificationRuntime
from modelplex.tasks.classification.servicer import add_servicers
from modelplex.tasks.classification.settings import ClassificationSettings
from modelplex_client.pb import image_classification_pb2 as pb

__all__ = ["TASK"]

TASK = TaskDefinition(
    id="image_classification",
    interface=ImageClassifier,
    services=(pb.DESCRIPTOR.services_by_name["ImageClassification"].full_name,),
    add_servicers=add_servicers,
    runtime=ClassificationRuntime,
    settings=ClassificationSettings,
    settings_message=pb.ImageClassificationSettings.DESCRIPTOR.full_name,
    meta=ClassificationMeta,
    conformance=PROBES,
    oip=ClassificationOip(),
    description="A batch of images in, the top-k classes of each out (dynamic batching).",
)

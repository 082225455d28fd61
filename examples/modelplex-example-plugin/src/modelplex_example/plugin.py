"""Registers `dominant-color`: a torch module and its labels; modelplex's kit does the rest
(device, checkpoint, preprocessing, batching, top-k, unload). No torch import at registration."""

from pydantic import BaseModel, ConfigDict, Field

from modelplex import ImagePreprocessing, LoadContext, hookimpl
from modelplex.kit import torch_classifier

LABELS = ("red", "green", "blue")
# Images are resized to 32 x 32, scaled to [0, 1], not normalised.
PRE = ImagePreprocessing(crop_size=32, resize_size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


class ColorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sharpness: float = Field(10.0, gt=0)
    """Scales the channel means before the softmax: higher is more confident."""


def build(ctx: LoadContext[ColorSettings]):  # type: ignore[no-untyped-def]
    from modelplex_example.model import ChannelMeans

    return ChannelMeans(ctx.settings.sharpness)


@hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register(torch_classifier("dominant-color", build, labels=LABELS, preprocessing=PRE, settings=ColorSettings))

"""A plugin for subprocess tests, installed as a real distribution (a .dist-info with an
entry point) into a folder put on PYTHONPATH. Its models wait, in ``load`` or in
``classify``, until a ``release`` file appears in the folder their settings name, after
marking that they started; so a test knows the work is in progress when it acts."""

from __future__ import annotations

from pathlib import Path

SOURCE = """
import pathlib, time
from pydantic import BaseModel
from modelplex import ClassificationMeta, ClassScore, ImageClassifier, ModelSpec, Variant, hookimpl


class Settings(BaseModel):
    dir: str


def _wait(folder, mark):
    (folder / mark).touch()
    while not (folder / "release").exists():
        time.sleep(0.01)


class Slow(ImageClassifier):
    labels, input_shape = ("a",), (1,)

    def __init__(self, ctx, where):
        self.dir, self.where = pathlib.Path(ctx.settings.dir), where

    def load(self):
        if self.where == "load":
            _wait(self.dir, "loading")

    def unload(self):
        pass

    def preprocess(self, image):
        return image

    def classify(self, inputs, top_k):
        if self.where == "classify":
            _wait(self.dir, "classifying")
        return [[ClassScore(0, "a", 1.0)] for _ in inputs]


@hookimpl
def register_models(register):
    variant = Variant("v", "", ClassificationMeta(num_classes=1))
    for where in ("load", "classify"):
        factory = lambda ctx, where=where: Slow(ctx, where)
        register(ModelSpec(f"slow-{where}", "image_classification", factory, (variant,), settings=Settings))
"""


def install(site: Path) -> Path:
    """Write the plugin and its distribution metadata into ``site``; return it."""
    info = site / "slowplugin-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (site / "slowplugin.py").write_text(SOURCE)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slowplugin\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[modelplex]\nslowplugin = slowplugin\n")
    return site

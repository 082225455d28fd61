"""A test plugin whose model records what the server asks of it.

Registered in-process through ``extra_plugins`` (the entry-point path is covered
by the example plugins). Tests reach a loaded model's recorder via ``PROBES``.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from modelplex import (
    ClassificationMeta,
    ClassScore,
    EncodedImage,
    ImageClassifier,
    InvalidInputError,
    LoadContext,
    ModelSpec,
    RawTensor,
    Task,
    Variant,
    hookimpl,
)

LABELS = ("zero", "one", "two", "three")


@dataclass
class Probe:
    """What one model (all its instances) saw."""

    batches: list[list[bytes]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    devices: list[str] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    load_gate: threading.Event = field(default_factory=threading.Event)
    barrier: threading.Barrier | None = None
    unloaded: int = 0
    torch_threads: list[int] = field(default_factory=list)


PROBES: dict[str, Probe] = {}


class ProbeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    block: bool = False
    """classify waits for the probe's gate (tests open it)."""
    block_load: bool = False
    """load waits for the probe's load gate."""
    parties: int = 0
    """classify waits at a barrier of this many parties (proves parallel instances)."""
    fail: bool = False
    """classify raises RuntimeError."""
    fail_second_load: bool = False
    """load of the model's second instance raises RuntimeError."""


class ProbeClassifier(ImageClassifier):
    """Class of an image = its first byte mod 4, score 1."""

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx
        self.settings: ProbeSettings = ctx.settings  # type: ignore[assignment]
        self.probe = PROBES.setdefault(ctx.model_name, Probe())
        self.probe.devices.append(ctx.device)
        if self.settings.parties and self.probe.barrier is None:
            self.probe.barrier = threading.Barrier(self.settings.parties, timeout=10)
        self.labels = LABELS
        self.input_shape = (1, 2, 2)

    def load(self) -> None:
        import torch

        self.probe.torch_threads.append(torch.get_num_threads())
        if self.settings.fail_second_load and len(self.probe.devices) == 2:
            raise RuntimeError("second instance cannot load")
        if self.settings.block_load:
            self.probe.load_gate.wait(30)

    def unload(self) -> None:
        self.probe.unloaded += 1

    def memory_bytes(self) -> int:
        return 1234

    def preprocess(self, image: EncodedImage | RawTensor) -> bytes:
        if isinstance(image, RawTensor):
            return struct.pack("B", int(struct.unpack("<f", image.data[:4])[0]) % 256)
        if image.data.startswith(b"bad"):
            raise InvalidInputError("cannot decode image: it starts with 'bad'")
        return image.data

    def classify(self, inputs: Sequence[bytes], top_k: int) -> list[list[ClassScore]]:
        self.probe.threads.add(threading.current_thread().name)
        self.probe.batches.append(list(inputs))
        if self.settings.parties and self.probe.barrier is not None:
            self.probe.barrier.wait()
        if self.settings.block:
            self.probe.gate.wait(30)
        if self.settings.fail:
            raise RuntimeError("probe exploded")
        out = []
        for x in inputs:
            cls = x[0] % 4
            ranked = [cls] + [c for c in range(4) if c != cls]
            out.append([ClassScore(c, LABELS[c], 1.0 if c == cls else 0.0) for c in ranked[:top_k]])
        return out


def _factory(ctx: LoadContext) -> ProbeClassifier:
    return ProbeClassifier(ctx)


class ProbePlugin:
    @hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        register(
            ModelSpec(
                name="probe",
                task=Task.IMAGE_CLASSIFICATION,
                factory=_factory,
                variants=(Variant("v1", weights="probe:v1", meta=ClassificationMeta(num_classes=4)),),
                settings=ProbeSettings,
                description="records what it is asked",
            )
        )


PLUGINS = [("probe", ProbePlugin())]


def probe_model(name: str = "probe", **fields: object) -> dict[str, object]:
    """A [[models]] entry for the probe."""
    settings = fields.pop("settings", {})
    return {
        "spec": "probe",
        "name": name,
        "weights": "random",
        "devices": ["cpu"],
        "settings": settings,
        **fields,
    }

"""What a task is, to the server: one description that a plugin registers.

A task (image classification, text generation, or one a third party brings) is
one vertical slice: its proto service, its model interface, its runtime, its
servicer and its serving settings. :class:`TaskDefinition` ties them together
so that the core serves the task, lists it by reflection, reports it in health,
ListModels and ListPlugins, and loads its models, without naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from modelplex.oip_mapping import OipMapping
from modelplex.specs import TASK_ID_PATTERN, NoSettings, VariantMeta
from modelplex.tasks.base import TaskModel

if TYPE_CHECKING:
    from modelplex.server.instance import Instance
    from modelplex.server.runtimes.base import TaskRuntime

__all__ = ["ConformanceProbes", "FrontDoor", "RuntimeFactory", "RuntimeLookup", "ServicerInstaller", "TaskDefinition"]

RuntimeLookup = Callable[[str], "TaskRuntime"]
"""Given a model name from a request, the runtime of that ready model of this task, or the
precise modelplex error why not (no such model, another task's model, not ready yet)."""

ServicerInstaller = Callable[[RuntimeLookup, Any], None]
"""``(runtimes, server)``: build the task's servicers over ``runtimes`` and add them to the
``grpc.aio.Server`` with the generated ``add_*Servicer_to_server`` functions."""

RuntimeFactory = Callable[[str, "Sequence[Instance]", Any], "TaskRuntime"]
"""``(model name, loaded instances, task settings)``: the runtime of one loaded model."""


Probe = Callable[[Any, str], None]
"""``(grpc.Channel, model name)``: make one call of the task over a real channel."""


@dataclass(frozen=True)
class ConformanceProbes:
    """How the conformance kit (:mod:`modelplex.conformance`) exercises a task's models.

    Each probe gets a synchronous ``grpc.Channel`` to a running server and a model's name,
    and uses the task's own generated stubs."""

    sample: Probe
    """One ordinary request that must succeed (raise on anything unexpected)."""
    invalid: Probe
    """One request with bad input: the call must fail; the kit checks INVALID_ARGUMENT."""
    cancel: Probe | None = None
    """For streaming tasks: start a stream, read its first message, cancel it, return."""


@dataclass(frozen=True)
class FrontDoor:
    """A server of its own that a task brings beside gRPC (an HTTP API), started by the core
    when the operator gives it a port: ``[server.front_doors] <name> = <port>``."""

    name: str
    """Its key in ``server.front_doors``, e.g. ``"openai"``."""
    create: Callable[[Callable[[], list[str]], Any], Any]
    """``(model_names, authenticator or None)`` -> an object with ``async start(lookup, host,
    port) -> port`` and ``async stop()``; ``model_names()`` lists the task's loaded models."""


@dataclass(frozen=True)
class TaskDefinition:
    """One task, as a plugin registers it with ``register_tasks``.

    Building one imports nothing heavy: pass the generated ``add_*_to_server`` through
    ``add_servicers`` and the runtime class, both imported by the plugin module (which
    imports grpc and protobuf, never torch).
    """

    id: str
    """The task id on the wire and in specs: lowercase, ``[a-z0-9_]`` words joined by dots
    (``"image_classification"``, ``"acme.object_detection"``). Unique on a server."""
    interface: type[Any]
    """A subclass of :class:`modelplex.TaskModel` (usually abstract): the ABC a spec's factory
    must return an instance of (checked at load)."""
    services: tuple[str, ...]
    """Full names of the task's gRPC services (``"modelplex.v1.ImageClassification"``): served
    by reflection and reported by grpc.health.v1. Unique on a server."""
    add_servicers: ServicerInstaller
    """Adds the task's servicers to the server; see :data:`ServicerInstaller`."""
    runtime: RuntimeFactory
    """Builds the runtime of a loaded model; usually a :class:`modelplex.runtime.TaskRuntime`
    subclass (its constructor takes exactly these arguments). It is called on a worker thread,
    once every instance has loaded, so it may read files; its ``start()`` is then called on the
    event loop."""
    settings: type[BaseModel] = NoSettings
    """The pydantic model of a model's serving settings for this task (batch size, queue,
    limits); use ``extra="forbid"``. Its fields are the extra keys of a ``[[models]]`` entry."""
    settings_message: str = ""
    """Full name of the proto message that carries those settings in LoadModelRequest's
    ``task_settings`` (``"modelplex.v1.ImageClassificationSettings"``); empty for none."""
    meta: type[VariantMeta] = VariantMeta
    """The variant meta type of this task's specs: a spec whose variants carry another meta
    type is refused at registration."""
    description: str = ""
    conformance: ConformanceProbes | None = None
    """Calls the conformance kit makes against this task's models; None runs only the
    task-independent checks (registration, load, health, unload)."""
    front_door: FrontDoor | None = None
    """A server of the task's own beside gRPC (text generation: the OpenAI-compatible API)."""
    oip: OipMapping | None = None
    """How the task's models answer the Open Inference Protocol (``inference.GRPCInferenceService``,
    docs/oip.md): their tensors and the call they make. None: the task's models are listed and
    described there, and ModelInfer on them is UNIMPLEMENTED."""

    def __post_init__(self) -> None:
        if not TASK_ID_PATTERN.match(self.id):
            raise ValueError(f"task id {self.id!r} must be lowercase words of [a-z0-9_] joined by dots")
        if not (isinstance(self.interface, type) and issubclass(self.interface, TaskModel)):
            raise TypeError(f"task {self.id!r}: interface must be a subclass of modelplex.TaskModel")
        if isinstance(self.services, str) or not all(isinstance(s, str) and s for s in self.services):
            raise TypeError(f"task {self.id!r}: services must be a tuple of full service names")
        object.__setattr__(self, "services", tuple(self.services))
        if not (isinstance(self.settings, type) and issubclass(self.settings, BaseModel)):
            raise TypeError(f"task {self.id!r}: settings must be a pydantic model class")
        if self.oip is not None and not isinstance(self.oip, OipMapping):
            raise TypeError(f"task {self.id!r}: oip must be an OipMapping instance (modelplex.oip_mapping)")

"""How a task speaks the Open Inference Protocol (OIP v2): its models' named tensors.

The typed API of a task (``modelplex.v1.ImageClassification``, ...) stays its primary
one; the OIP front door (``inference.GRPCInferenceService``, docs/oip.md) adds reach to
the tools that already speak KServe's and Triton's protocol. A task opts in by setting
``TaskDefinition(oip=...)`` to an :class:`OipMapping`: the one place of its task unit
that says which tensors its models take and give, and turns them into a call of its
runtime. The server does the rest, for every task alike: it decodes the wire tensors
(typed ``contents`` or ``raw_input_contents``), checks them and the parameters against
:meth:`OipMapping.metadata`, and encodes what the mapping returns.

Tensors are numpy arrays: a numeric tensor has the dtype of its datatype
(:data:`DATATYPES`), a BYTES tensor is an ``object`` array of ``bytes``. This module
imports neither numpy nor torch, so that registering a task stays cheap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np

    from modelplex.server.runtimes.base import TaskRuntime

__all__ = [
    "DATATYPES",
    "OipMapping",
    "OipMetadata",
    "Outputs",
    "Parameter",
    "ParameterSpec",
    "Streamed",
    "TensorSpec",
]

DATATYPES: Mapping[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
"""The OIP datatypes modelplex serves, and the numpy dtype each arrives as (BF16 has none)."""

Parameter = bool | int | float | str
"""A request parameter's value, converted to the kind its :class:`ParameterSpec` declares."""

Outputs = Mapping[str, "np.ndarray"]
"""Named output tensors: a subset of the outputs :meth:`OipMapping.metadata` declares (a
streamed response may carry some only, e.g. a finish reason on the last one)."""


class Streamed(NamedTuple):
    """One response of a streamed request (:meth:`OipMapping.stream`)."""

    outputs: Outputs
    final: bool = False
    """Whether it is the request's last response: sent as the response parameter
    ``triton_final_response``, the end of a request under Triton's decoupled semantics."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of a task's models, as ModelMetadata reports it."""

    name: str
    datatype: str
    """One of :data:`DATATYPES` (``"FP32"``, ``"INT64"``, ``"BYTES"``...)."""
    shape: tuple[int, ...]
    """The dimensions, -1 for a variable one. An input must have this many dimensions and
    the fixed ones as given."""
    optional: bool = False
    """For an input: whether a request may leave it out."""
    description: str = ""

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ValueError(f"tensor {self.name!r}: datatype {self.datatype!r} is not one of {', '.join(DATATYPES)}")
        if any(d < -1 for d in self.shape):
            raise ValueError(f"tensor {self.name!r}: dimensions are sizes or -1, got {self.shape}")


@dataclass(frozen=True)
class ParameterSpec:
    """A request parameter a task takes (``parameters`` of ModelInferRequest)."""

    name: str
    kind: type[bool] | type[int] | type[float] | type[str]
    """What the value is converted to: a bool takes ``bool_param``; an int ``int64_param`` or
    ``uint64_param``; a float those or ``double_param`` or a numeric ``string_param``; a str
    ``string_param``. Anything else is INVALID_ARGUMENT naming the parameter."""
    description: str = ""


@dataclass(frozen=True)
class OipMetadata:
    """A model's tensors and the parameters its requests may set."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: tuple[ParameterSpec, ...] = ()


class OipMapping(ABC):
    """A task's requests and responses as named tensors: set on ``TaskDefinition.oip``.

    The server calls these on the event loop, with the runtime of a ready model of the
    task, inputs and parameters already checked against :meth:`metadata`; they submit
    work to the runtime (never run a model themselves) and raise modelplex errors
    (InvalidInputError and the like) for what the checks cannot see."""

    decoupled: bool = False
    """Whether one request may give several responses (Triton's "decoupled" models): then
    ModelStreamInfer sends each of :meth:`stream`'s items as it comes, and ModelInfer
    answers with :meth:`infer`'s whole result."""

    @abstractmethod
    def metadata(self, runtime: TaskRuntime[Any]) -> OipMetadata:
        """The tensors and parameters of this model (its shapes may depend on the model)."""

    @abstractmethod
    async def infer(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> Outputs:
        """Run one request; its output tensors. ``deadline`` is on the event loop's clock
        (None: none), for the runtime's own ``deadline`` argument."""

    async def stream(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> AsyncIterator[Streamed]:
        """The responses of one request, as they come (ModelStreamInfer), the last one marked
        ``final``. By default the one result of :meth:`infer`; a decoupled task yields one
        item per step. When the client goes away the iteration is closed: stop the work in
        a ``finally``."""
        yield Streamed(await self.infer(runtime, inputs, parameters, deadline), final=True)

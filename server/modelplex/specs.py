"""What a plugin registers: model specs, their variants, and what a factory is given.

Everything here is plain data: building a spec imports no torch, loads no
weights and touches no network, so that discovering plugins stays cheap.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from modelplex.tasks.base import TaskModel

__all__ = [
    "TASK_ID_PATTERN",
    "LoadContext",
    "ModelSpec",
    "NoSettings",
    "ServerPath",
    "Task",
    "Variant",
    "VariantMeta",
    "WeightsChoice",
    "WeightsSource",
]


TASK_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
"""What a task id looks like: ``image_classification``, ``acme.object_detection``."""


class Task(enum.StrEnum):
    """The ids of the first-party tasks, for convenience: a spec's ``task`` is any task
    id a plugin registered (a plain string), and these are strings too."""

    IMAGE_CLASSIFICATION = "image_classification"
    TEXT_GENERATION = "text_generation"
    SPEECH_RECOGNITION = "speech_recognition"
    SPEECH_SYNTHESIS = "speech_synthesis"
    IMAGE_GENERATION = "image_generation"


class WeightsSource(str, enum.Enum):
    """Where a loaded model's weights come from."""

    PRETRAINED = "pretrained"
    """The library's own pretrained weights for the variant (cache or download)."""
    CHECKPOINT = "checkpoint"
    """A local file or folder the operator named."""
    RANDOM = "random"
    """Random initialisation; only ever when the config asks for it."""


@dataclass(frozen=True)
class WeightsChoice:
    """The operator's choice of weights for one loaded model."""

    source: WeightsSource
    path: Path | None = None
    """The checkpoint file or folder when ``source`` is CHECKPOINT."""
    allow_download: bool = False
    """Whether pretrained weights missing from the local cache may be downloaded."""
    id: str | None = None
    """Pretrained weights the operator named by the library's identifier (a Hugging Face
    hub id such as ``"openai-community/gpt2"``) instead of by variant. Only for specs with
    ``accepts_weight_ids``; None means the variant's own weights."""

    @classmethod
    def parse(cls, text: str, *, allow_download: bool = False) -> WeightsChoice:
        """``"pretrained"``, ``"random"``, or a path: one with a ``/``, or starting with ``.`` or
        ``~``, or with a file suffix. Anything else is a ValueError (a typo, not a file)."""
        value = text.strip()
        if value in ("", "pretrained"):
            return cls(WeightsSource.PRETRAINED, allow_download=allow_download)
        if value == "random":
            return cls(WeightsSource.RANDOM)
        path = Path(value).expanduser()
        if "/" in value or "\\" in value or value.startswith((".", "~")) or path.suffix:
            return cls(WeightsSource.CHECKPOINT, path)
        raise ValueError(
            f'weights {value!r} is neither "pretrained", "random" nor a path (write ./{value} for a file here)'
        )

    def describe(self) -> str:
        if self.source is WeightsSource.CHECKPOINT:
            return str(self.path)
        return self.id or self.source.value


@dataclass(frozen=True)
class VariantMeta:
    """Typed facts about a variant that every task shares. Each task extends it with its
    own (``ClassificationMeta``, ``TextGenerationMeta``, ...)."""

    num_params: int | None = None
    recipe: str = ""
    """Where the weights come from (paper, training recipe, model card)."""


@dataclass(frozen=True)
class Variant:
    """One set of weights of a spec, like a member of a torchvision ``Weights`` enum."""

    name: str
    """Unique within the spec, e.g. ``"IMAGENET1K_V1"``."""
    weights: str
    """The library's identifier of the weights: ``"ResNet50_Weights.IMAGENET1K_V2"``,
    a Hugging Face id ``"gpt2"``, a torchaudio bundle name."""
    meta: VariantMeta = field(default_factory=VariantMeta)
    description: str = ""


class NoSettings(BaseModel):
    """The settings model of a spec that takes no settings."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ServerPath:
    """Marks a settings field that names a file or folder on the server (a lexicon, a vocoder's
    checkpoint, a chat template file)::

        lexicon: Annotated[str | None, ServerPath()] = None

    A model in the config file may name any path. LoadModel, which a remote caller sends, may
    name one only under the server's weights roots (``server.weights_roots``), as it may a
    checkpoint in ``weights``; any other path is PERMISSION_DENIED, whether it exists or not.
    Put it on every field of a spec's or a task's settings model that the plugin opens."""


def server_path_fields(model: type[BaseModel]) -> list[str]:
    """The fields of a settings model marked :class:`ServerPath`."""
    return [name for name, f in model.model_fields.items() if any(isinstance(m, ServerPath) for m in f.metadata)]


S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class LoadContext(Generic[S]):
    """What a factory is given to build one instance of a model.

    Generic over the spec's settings model, so that a factory typed
    ``LoadContext[MySettings]`` reads ``ctx.settings.my_field`` with its type."""

    model_name: str
    """The name the model is served under."""
    spec: ModelSpec
    variant: Variant
    weights: WeightsChoice
    device: str
    """``"cpu"``, ``"cuda:0"``, ...: the instance's one device."""
    settings: S
    """An instance of the spec's settings model, validated."""
    task_settings: BaseModel = field(default_factory=NoSettings)
    """The model's serving settings of its task (``max_batch_size`` and the like), validated
    by the task's settings model; the runtime enforces them, a model may read them."""


@dataclass(frozen=True)
class ModelSpec:
    """A model a plugin can serve: the unit of ``register(...)``.

    ``factory`` is called once per instance, in that instance's worker thread,
    with a :class:`LoadContext`; it returns an object implementing the task's
    interface (see :mod:`modelplex.tasks`) whose ``load()`` the server calls
    next. Import torch inside the factory, not at module level.
    """

    name: str
    task: str
    """The id of the task the spec's models serve: a :class:`Task` member, or the id of a
    task some plugin registers (``register_tasks``)."""
    factory: Callable[[LoadContext[Any]], TaskModel]
    variants: tuple[Variant, ...] = ()
    default_variant: str | None = None
    """Name of the variant used when the config names none; the first if None."""
    settings: type[BaseModel] = NoSettings
    """The pydantic model of this spec's settings; use ``extra="forbid"``."""
    accepts_weight_ids: bool = False
    """Whether ``weights`` may name pretrained weights by the library's identifier (a hub id
    like ``"org/model"``): a value that is not an existing path then reaches the factory as
    ``WeightsChoice(PRETRAINED, id=value)`` instead of failing as a missing checkpoint."""
    description: str = ""
    memory_estimate: Callable[[Variant, Any], int] | None = None
    """``(variant, settings) -> bytes`` one instance will hold on its device, roughly (an upper
    bound is best). The server refuses a load that does not fit the device's free memory
    before building anything; None: no check."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", str(self.task))
        if not TASK_ID_PATTERN.match(self.task):
            raise ValueError(f"spec {self.name!r}: task {self.task!r} is not a task id (like 'image_classification')")
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"spec name {self.name!r} must be non-empty and contain no whitespace")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"spec {self.name!r} has duplicate variant names: {names}")
        if self.default_variant is not None and self.default_variant not in names:
            raise ValueError(f"spec {self.name!r}: default variant {self.default_variant!r} is not one of {names}")

    def variant(self, name: str | None) -> Variant:
        """The named variant, or the default one. KeyError names the choices."""
        if not self.variants:
            return Variant(name="default", weights="")
        wanted = name or self.default_variant or self.variants[0].name
        for v in self.variants:
            if v.name == wanted:
                return v
        raise KeyError(
            f"spec {self.name!r} has no variant {wanted!r}; variants: {', '.join(v.name for v in self.variants)}"
        )

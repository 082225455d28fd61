"""The model registry: what is loaded, in what state, on which devices.

It knows no gRPC. Loading validates everything it can first (spec, variant,
settings, devices, checkpoint path) and raises ConfigError before any weight
is read; then it builds every instance in parallel, each on its own thread.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from modelplex.errors import (
    ConfigError,
    InvalidInputError,
    ModelExistsError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    ModelplexError,
    QueueFullError,
    WeightsNotFoundError,
    WrongTaskError,
)
from modelplex.server.config import ModelConfig
from modelplex.server.devices import DeviceInventory, available_bytes, place
from modelplex.server.instance import Instance
from modelplex.server.plugins import PluginSet
from modelplex.server.runtimes.base import TaskRuntime
from modelplex.specs import LoadContext, ModelSpec, Variant, WeightsChoice, WeightsSource
from modelplex.taskdef import TaskDefinition

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelRegistry", "ModelState", "Plan", "looks_like_id"]


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"


@dataclass
class Plan:
    """A validated model config: everything needed to load, nothing loaded yet."""

    name: str
    config: ModelConfig
    spec: ModelSpec
    plugin: str
    task: TaskDefinition
    variant: Variant
    weights: WeightsChoice
    settings: BaseModel
    """The spec's (plugin's) settings, validated."""
    task_settings: BaseModel
    """The task's serving settings (batching, queue, limits), validated."""
    devices: list[str]


@dataclass
class LoadedModel:
    """A model in the registry, from the start of its loading to its unloading."""

    plan: Plan
    state: ModelState = ModelState.LOADING
    instances: list[Instance] = field(default_factory=list)
    runtime: TaskRuntime | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def task(self) -> str:
        return self.plan.task.id


StateListener = Callable[[str, bool | None], None]
"""Called with (model name, serving?) whenever a model becomes ready or stops serving, and
with None once it is gone (a failed load, or unloaded)."""


class ModelRegistry:
    def __init__(
        self,
        plugins: PluginSet,
        inventory: DeviceInventory,
        *,
        allow_download: bool = False,
        on_state: StateListener | None = None,
    ) -> None:
        self.plugins = plugins
        self.inventory = inventory
        self.allow_download = allow_download
        self._models: dict[str, LoadedModel] = {}
        self._on_state = on_state or (lambda name, serving: None)

    # -- lookup ---------------------------------------------------------------------------

    def list(self) -> list[LoadedModel]:
        return list(self._models.values())

    def has(self, name: str) -> bool:
        """Whether a model of that name is in the registry (in any state)."""
        return name in self._models

    def describe(self, name: str) -> LoadedModel:
        """The model of that name in any state; ModelNotFoundError if there is none."""
        model = self._models.get(name)
        if model is None:
            raise self._not_found(name)
        return model

    def get(self, name: str, task: str) -> TaskRuntime:
        """The runtime of a ready model serving ``task``, or the precise error why not."""
        model = self._models.get(name)
        if model is None:
            raise self._not_found(name)
        if model.task != task:
            services = ", ".join(model.plan.task.services)
            raise WrongTaskError(f"model {name!r} serves {model.task}, not {task}; call {services} instead")
        if model.state is not ModelState.READY or model.runtime is None:
            raise ModelNotReadyError(f"model {name!r} is {model.state.value}; retry when it is ready")
        return model.runtime

    def lookup(self, task: str) -> Callable[[str], TaskRuntime]:
        """The runtime lookup a task's servicers are given: :meth:`get` bound to ``task``."""
        return lambda name: self.get(name, task)

    def _not_found(self, name: str) -> ModelplexError:
        # A missing name is a malformed request (INVALID_ARGUMENT); an unknown one, NOT_FOUND.
        if not name:
            return InvalidInputError("the request names no model: set `model`")
        names = sorted(self._models)
        loaded = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "") or "none"
        return ModelNotFoundError(f"no model named {_clip(name)!r} is loaded; loaded models: {loaded}")

    # -- loading ----------------------------------------------------------------------------

    def plan(self, config: ModelConfig) -> Plan:
        """Validate a model config against the registered specs and this machine's devices."""
        name = config.served_name
        where = f"model {name!r}"
        try:
            spec, plugin = self.plugins.spec(config.spec)
        except KeyError as e:
            raise ConfigError(f"{where}: {e.args[0]}") from None
        try:
            variant = spec.variant(config.variant)
        except KeyError as e:
            raise ConfigError(f"{where}: {e.args[0]}") from None
        try:
            task = self.plugins.task(spec.task)
        except KeyError as e:
            raise ConfigError(f"{where}: spec {spec.name!r}: {e.args[0]}") from None
        settings = _validate(spec.settings, config.settings, where, "settings.")
        task_settings = _validate(task.settings, config.task_settings, where, "", task=task)
        allow_download = self.allow_download if config.allow_download is None else config.allow_download
        try:
            weights = WeightsChoice.parse(config.weights, allow_download=allow_download)
        except ValueError as e:
            if not spec.accepts_weight_ids:
                raise ConfigError(f"{where}: {e}") from None
            weights = WeightsChoice(WeightsSource.PRETRAINED, allow_download=allow_download, id=config.weights.strip())
        missing = weights.source is WeightsSource.CHECKPOINT and weights.path is not None and not weights.path.exists()
        if missing and spec.accepts_weight_ids and looks_like_id(config.weights):
            weights = WeightsChoice(WeightsSource.PRETRAINED, allow_download=allow_download, id=config.weights.strip())
        elif missing:
            raise WeightsNotFoundError(
                f"{where}: checkpoint {weights.path} does not exist. Give the path of a saved state_dict "
                f'(.pt/.pth/.safetensors) or model folder, weights = "pretrained", or weights = "random".'
            )
        try:
            devices = place(config.devices, config.instances_per_device, self.inventory)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        self._check_memory(where, spec, variant, settings, devices)
        return Plan(name, config, spec, plugin, task, variant, weights, settings, task_settings, devices)

    def _check_memory(
        self, where: str, spec: ModelSpec, variant: Variant, settings: BaseModel, devices: Sequence[str]
    ) -> None:
        """Refuse, before building anything, a model whose estimate does not fit its devices."""
        if spec.memory_estimate is None:
            return
        per_instance = int(spec.memory_estimate(variant, settings))
        for device in sorted(set(devices)):
            needed = per_instance * sum(d == device for d in devices)
            available = available_bytes(device, self.inventory)
            if available is not None and needed > available:
                raise QueueFullError(
                    f"{where}: needs about {needed / 2**30:.1f} GiB on {device} and {available / 2**30:.1f} GiB "
                    "are free; unload a model, use fewer instances, or another device"
                )

    async def load(self, config: ModelConfig) -> LoadedModel:
        """Plan and load a model; returns once it is READY. Raises ConfigError,
        ModelExistsError or ModelLoadError; a failed model leaves no trace."""
        plan = self.plan(config)
        if plan.name in self._models:
            state = self._models[plan.name].state.value
            raise ModelExistsError(f"a model named {plan.name!r} is already {state}; unload it or pick another name")
        model = LoadedModel(plan)
        self._models[plan.name] = model
        self._on_state(plan.name, False)
        log.info(
            "loading %r (spec %s, variant %s, weights %s) on %s",
            plan.name,
            plan.spec.name,
            plan.variant.name,
            plan.weights.describe(),
            ", ".join(plan.devices),
        )
        model.instances = [Instance(plan.name, d, i) for i, d in enumerate(plan.devices)]
        cpu_threads = self._cpu_threads(plan)
        try:
            outcomes = await asyncio.gather(
                *(self._load_instance(plan, inst, cpu_threads) for inst in model.instances), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            for inst in model.instances:
                if not isinstance(inst.model, plan.task.interface):
                    raise ModelLoadError(
                        f"the factory of spec {plan.spec.name!r} returned a {type(inst.model).__name__}, "
                        f"not a {plan.task.interface.__name__} (task {plan.task.id!r})"
                    )
            # Off the event loop: a runtime may read files as it is built (a beam decoder's LM).
            model.runtime = await asyncio.to_thread(plan.task.runtime, plan.name, model.instances, plan.task_settings)
        except BaseException as e:
            del self._models[plan.name]
            self._on_state(plan.name, None)
            await asyncio.gather(*(inst.close() for inst in model.instances))
            if isinstance(e, ModelLoadError | ConfigError) or not isinstance(e, Exception):
                raise
            raise ModelLoadError(f"loading {plan.name!r} failed: {type(e).__name__}: {e}") from e
        model.runtime.start()
        model.state = ModelState.READY
        self._on_state(plan.name, True)
        log.info("model %r is ready", plan.name)
        return model

    async def _load_instance(self, plan: Plan, inst: Instance, cpu_threads: int) -> None:
        ctx = LoadContext(
            model_name=plan.name,
            spec=plan.spec,
            variant=plan.variant,
            weights=plan.weights,
            device=inst.device,
            settings=plan.settings,
            task_settings=plan.task_settings,
        )
        await inst.load(plan.spec.factory, ctx, cpu_threads if inst.device == "cpu" else None)

    def _cpu_threads(self, plan: Plan) -> int:
        if plan.config.cpu_threads is not None:
            return plan.config.cpu_threads
        cpu_instances = sum(d == "cpu" for d in plan.devices)
        # OMP_NUM_THREADS, when the operator set it, is the budget to split instead of the cores.
        budget = _int_env("OMP_NUM_THREADS") or os.cpu_count() or 1
        threads = max(1, budget // max(1, cpu_instances))
        others = sum(i.device == "cpu" for m in self._models.values() if m.name != plan.name for i in m.instances)
        if others:
            log.warning(
                "model %r: %d CPU instance(s) of other models share this machine's %d cores; set cpu_threads "
                "so that instances x threads stay within the cores (docs/configuration.md)",
                plan.name,
                others,
                os.cpu_count() or 1,
            )
        return threads

    async def unload(self, name: str) -> None:
        """Stop serving ``name``: queued requests fail UNAVAILABLE, running ones finish first.
        For streaming tasks (text generation) the decode step in flight finishes, then every
        stream of the model, running or still waiting, ends with finish reason CANCELLED
        (unless it finished in that step)."""
        model = self.describe(name)
        if model.state is not ModelState.READY:
            raise ModelNotReadyError(f"model {name!r} is {model.state.value}; it cannot be unloaded now")
        model.state = ModelState.UNLOADING
        self._on_state(name, False)
        # Shielded: an UnloadModel call that is cancelled (deadline, client gone) must not
        # leave queued requests unanswered or the instances loaded after the name is freed.
        await asyncio.shield(self._tear_down(model))

    async def _tear_down(self, model: LoadedModel) -> None:
        try:
            if model.runtime is not None:
                await model.runtime.stop()
            # Each instance's thread finishes what it runs before it unloads.
            await asyncio.gather(*(inst.close() for inst in model.instances))
        finally:
            del self._models[model.name]
            self._on_state(model.name, None)
        log.info("model %r unloaded", model.name)

    async def close(self) -> None:
        """Unload everything (at shutdown)."""
        for name, model in list(self._models.items()):
            if model.state is ModelState.READY:
                await self.unload(name)


def _validate(
    model: type[BaseModel], values: dict[str, object], where: str, prefix: str, task: TaskDefinition | None = None
) -> BaseModel:
    """``values`` validated by a settings model; ConfigError naming each bad key."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = prefix + ".".join(str(p) for p in err["loc"])
            if err["type"] != "extra_forbidden":
                problems.append(f"{key}: {err['msg']}")
            elif task is None:
                problems.append(f"{key}: unknown key")
            else:
                takes = ", ".join(model.model_fields) or "none"
                problems.append(f"{key}: unknown key (task {task.id} takes: {takes})")
        raise ConfigError(f"{where}: {'; '.join(problems)}") from None


def looks_like_id(value: str) -> bool:
    """``org/model``, not ``/abs``, ``./rel``, ``~/x`` or a weights file: what a hub id looks like."""
    v = value.strip()
    return (
        not v.startswith(("/", ".", "~", "\\"))
        and v.count("/") <= 1
        and Path(v).suffix.lower() not in _WEIGHT_FILE_SUFFIXES
    )


_WEIGHT_FILE_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".pkl", ".h5", ".onnx"}


def _int_env(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def _clip(text: str, limit: int = 100) -> str:
    """A client's string, short enough to repeat in an error message."""
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} characters)"

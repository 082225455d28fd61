"""Plugin discovery: entry points of group ``modelplex``, loaded through pluggy.

The plugin manager is built by :func:`discover`, never at import time. Each plugin
is imported and asked for its tasks, then for its specs, on its own (through pluggy,
one plugin at a time), so that one broken plugin is reported and the others are
served. The entry points of the ``modelplex`` distribution itself (the first-party
tasks) are always loaded: the allow list names the plugins an operator chooses.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from modelplex import hookspecs
from modelplex.errors import PluginError
from modelplex.server.config import PluginSettings
from modelplex.specs import ModelSpec
from modelplex.taskdef import TaskDefinition

log = logging.getLogger(__name__)

__all__ = ["CORE_DISTRIBUTION", "PluginReport", "PluginSet", "PluginState", "discover"]

CORE_DISTRIBUTION = "modelplex"
"""The server's own distribution: its entry points are loaded whatever the allow list says."""


class PluginState(enum.Enum):
    ACTIVE = "active"
    BROKEN = "broken"
    SKIPPED = "skipped"


@dataclass
class PluginReport:
    """What happened to one plugin at discovery."""

    name: str
    distribution: str = ""
    version: str = ""
    state: PluginState = PluginState.ACTIVE
    error: str = ""
    specs: list[ModelSpec] = field(default_factory=list)
    tasks: list[TaskDefinition] = field(default_factory=list)

    def refuse(self, what: str) -> None:
        """Note one refused registration (a clash): the plugin's others stay served."""
        self.error = f"{self.error}; {what}" if self.error else what
        log.warning("plugin %r: %s", self.name, what)

    def fail(self, error: str, exc: BaseException | None = None) -> None:
        self.state, self.error = PluginState.BROKEN, error
        log.error("plugin %r (%s): %s", self.name, self.distribution or "not installed", error, exc_info=exc)


@dataclass
class PluginSet:
    """The result of discovery: a report per plugin, the tasks and the specs by name."""

    reports: list[PluginReport]
    tasks: dict[str, tuple[TaskDefinition, str]]
    """task id -> (task, name of the plugin that registered it)."""
    specs: dict[str, tuple[ModelSpec, str]]
    """spec name -> (spec, name of the plugin that registered it)."""

    def spec(self, name: str) -> tuple[ModelSpec, str]:
        try:
            return self.specs[name]
        except KeyError:
            known = ", ".join(sorted(self.specs)) or "none"
            raise KeyError(f"no plugin registered a spec named {name!r}; registered specs: {known}") from None

    def task(self, task_id: str) -> TaskDefinition:
        try:
            return self.tasks[task_id][0]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise KeyError(
                f"task {task_id!r} is not served by this server (no plugin registered it); tasks: {known}"
            ) from None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _wanted(ep: EntryPoint, settings: PluginSettings) -> bool:
    if ep.name in settings.block:
        return False
    if ep.dist is not None and ep.dist.name == CORE_DISTRIBUTION:
        return True
    if settings.allow:
        return ep.name in settings.allow
    return settings.autoload


def discover(
    settings: PluginSettings,
    *,
    extra: Iterable[tuple[str, Any]] = (),
    group: str = hookspecs.PROJECT_NAME,
) -> PluginSet:
    """Load the plugins ``settings`` allows and collect their tasks and specs.

    ``extra`` adds (name, plugin object) pairs registered directly, as if found
    through an entry point (tests and embedding use it). Raises PluginError in
    strict mode when any plugin is broken.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    reports: list[PluginReport] = []
    loaded: list[tuple[PluginReport, Any]] = []

    eps: list[EntryPoint] = sorted(entry_points(group=group), key=lambda e: e.name)
    for ep in eps:
        dist = ep.dist
        report = PluginReport(ep.name, dist.name if dist else "", dist.version if dist else "")
        reports.append(report)
        if not _wanted(ep, settings):
            report.state = PluginState.SKIPPED
            continue
        try:
            obj = ep.load()
        except Exception as e:  # a plugin's import may fail in any way
            report.fail(f"import failed: {_describe(e)}", e)
            continue
        loaded.append((report, obj))
    for name, obj in extra:
        report = PluginReport(name)
        reports.append(report)
        loaded.append((report, obj))

    registered: list[tuple[PluginReport, Any]] = []
    for report, obj in loaded:
        try:
            pm.register(obj, name=report.name)
        except Exception as e:  # pluggy validates hook names and signatures
            report.fail(f"registration failed: {_describe(e)}", e)
            continue
        registered.append((report, obj))

    tasks: dict[str, tuple[TaskDefinition, str]] = {}
    specs: dict[str, tuple[ModelSpec, str]] = {}
    for report, obj in registered:
        _collect(pm, obj, report, "register_tasks", _task_register(report, tasks))
        if report.state is PluginState.ACTIVE:
            for task in report.tasks:
                tasks[task.id] = (task, report.name)
    for report, obj in registered:
        if report.state is PluginState.ACTIVE:
            _collect(pm, obj, report, "register_models", _spec_register(report, specs, tasks))
        if report.state is PluginState.BROKEN:
            for task in report.tasks:  # withdrawn, with the specs it registered before failing
                if tasks.get(task.id, (None, ""))[1] == report.name:
                    del tasks[task.id]
            report.tasks, report.specs = [], []
            continue
        for spec in report.specs:
            specs[spec.name] = (spec, report.name)
        if report.tasks or report.specs:
            log.info(
                "plugin %r: %d task(s) %s, %d spec(s) %s",
                report.name,
                len(report.tasks),
                ", ".join(t.id for t in report.tasks) or "-",
                len(report.specs),
                ", ".join(s.name for s in report.specs) or "-",
            )

    broken = [r for r in reports if r.state is PluginState.BROKEN]
    if broken and settings.strict:
        detail = "; ".join(f"{r.name}: {r.error}" for r in broken)
        raise PluginError(f"strict mode: {len(broken)} plugin(s) failed: {detail}")
    return PluginSet(reports, tasks, specs)


def _collect(
    pm: pluggy.PluginManager, obj: Any, report: PluginReport, hook: str, register: Callable[[Any], None]
) -> None:
    """Call one plugin's implementations of ``hook`` through pluggy (its own ordering and
    wrappers apply); a failure marks the plugin BROKEN, with its traceback logged."""
    others = [p for p in pm.get_plugins() if p is not obj]
    caller = pm.subset_hook_caller(hook, remove_plugins=others)
    try:
        caller(register=register)
    except Exception as e:
        report.fail(f"{hook} failed: {_describe(e)}", e)


def _task_register(report: PluginReport, tasks: dict[str, tuple[TaskDefinition, str]]) -> Callable[[Any], None]:
    def register(task: TaskDefinition) -> None:
        if not isinstance(task, TaskDefinition):
            raise TypeError(f"register() takes a modelplex.TaskDefinition, got {type(task).__name__}")
        # A plugin's tasks are committed to ``tasks`` once its hook returned; clashes are
        # checked against the plugins before it and its own tasks so far.
        earlier = {t.id: owner for t, owner in tasks.values()}
        taken = {s: owner for t, owner in tasks.values() for s in t.services}
        for t in report.tasks:
            earlier[t.id] = report.name
            taken.update(dict.fromkeys(t.services, report.name))
        if task.id in earlier:
            report.refuse(f"task {task.id!r} ignored: already registered by plugin {earlier[task.id]!r}")
            return
        clash = next((s for s in task.services if s in taken), None)
        if clash is not None:
            report.refuse(f"task {task.id!r} ignored: service {clash!r} is already served by plugin {taken[clash]!r}")
            return
        report.tasks.append(task)

    return register


def _spec_register(
    report: PluginReport,
    specs: dict[str, tuple[ModelSpec, str]],
    tasks: dict[str, tuple[TaskDefinition, str]],
) -> Callable[[Any], None]:
    def register(spec: ModelSpec) -> None:
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"register() takes a modelplex.ModelSpec, got {type(spec).__name__}")
        if spec.name in specs or any(s.name == spec.name for s in report.specs):
            # Only the clashing spec is refused: the plugin's other specs stay served.
            owner = specs[spec.name][1] if spec.name in specs else report.name
            report.refuse(f"spec {spec.name!r} ignored: already registered by plugin {owner!r}")
            return
        task = tasks.get(spec.task)
        if task is not None:
            wrong = [v.name for v in spec.variants if not isinstance(v.meta, task[0].meta)]
            if wrong:
                report.refuse(
                    f"spec {spec.name!r} ignored: the meta of variant(s) {', '.join(wrong)} is not a "
                    f"{task[0].meta.__name__} (task {spec.task!r})"
                )
                return
        # A spec of a task no plugin registered stays listed; loading it says the task is missing.
        report.specs.append(spec)

    return register

"""Plugin discovery: entry points of group ``modelplex``, loaded through pluggy.

The plugin manager is built by :func:`discover`, never at import time. Each
plugin is imported and asked for its specs on its own, so that one broken
plugin is reported and the others are served.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from modelplex import hookspecs
from modelplex.errors import PluginError
from modelplex.server.config import PluginSettings
from modelplex.specs import ModelSpec

log = logging.getLogger(__name__)

__all__ = ["PluginReport", "PluginState", "PluginSet", "discover"]


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


@dataclass
class PluginSet:
    """The result of discovery: the manager, a report per plugin, and the specs by name."""

    manager: pluggy.PluginManager
    reports: list[PluginReport]
    specs: dict[str, tuple[ModelSpec, str]]
    """spec name -> (spec, name of the plugin that registered it)."""

    def spec(self, name: str) -> tuple[ModelSpec, str]:
        try:
            return self.specs[name]
        except KeyError:
            known = ", ".join(sorted(self.specs)) or "none"
            raise KeyError(f"no plugin registered a spec named {name!r}; registered specs: {known}") from None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _wanted(ep_name: str, settings: PluginSettings) -> bool:
    if ep_name in settings.block:
        return False
    if settings.allow:
        return ep_name in settings.allow
    return settings.autoload


def discover(
    settings: PluginSettings,
    *,
    extra: Iterable[tuple[str, Any]] = (),
    group: str = hookspecs.PROJECT_NAME,
) -> PluginSet:
    """Load the plugins ``settings`` allows and collect their specs.

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
        if not _wanted(ep.name, settings):
            report.state = PluginState.SKIPPED
            continue
        try:
            obj = ep.load()
        except Exception as e:  # a plugin's import may fail in any way
            report.state, report.error = PluginState.BROKEN, f"import failed: {_describe(e)}"
            log.error("plugin %r (%s) failed to import: %s", ep.name, report.distribution, report.error)
            continue
        loaded.append((report, obj))
    for name, obj in extra:
        report = PluginReport(name)
        reports.append(report)
        loaded.append((report, obj))

    specs: dict[str, tuple[ModelSpec, str]] = {}
    for report, obj in loaded:
        try:
            pm.register(obj, name=report.name)
        except Exception as e:  # pluggy validates hook names and signatures
            report.state, report.error = PluginState.BROKEN, f"registration failed: {_describe(e)}"
            log.error("plugin %r is not a valid modelplex plugin: %s", report.name, report.error)
            continue
        _collect_specs(pm, obj, report, specs)

    broken = [r for r in reports if r.state is PluginState.BROKEN]
    if broken and settings.strict:
        detail = "; ".join(f"{r.name}: {r.error}" for r in broken)
        raise PluginError(f"strict mode: {len(broken)} plugin(s) failed: {detail}")
    return PluginSet(pm, reports, specs)


def _collect_specs(
    pm: pluggy.PluginManager, obj: Any, report: PluginReport, specs: dict[str, tuple[ModelSpec, str]]
) -> None:
    mine: list[ModelSpec] = []

    def register(spec: ModelSpec) -> None:
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"register() takes a modelplex.ModelSpec, got {type(spec).__name__}")
        if spec.name in specs or any(s.name == spec.name for s in mine):
            # Only the clashing spec is refused: the plugin's other specs stay served.
            owner = specs[spec.name][1] if spec.name in specs else report.name
            conflict = f"spec {spec.name!r} ignored: already registered by plugin {owner!r}"
            report.error = f"{report.error}; {conflict}" if report.error else conflict
            log.warning("plugin %r: %s", report.name, conflict)
            return
        mine.append(spec)

    kwargs = {"register": register}
    for impl in pm.hook.register_models.get_hookimpls():
        if impl.plugin is not obj:
            continue
        try:
            impl.function(**{a: kwargs[a] for a in impl.argnames})
        except Exception as e:
            report.state, report.error = PluginState.BROKEN, f"register_models failed: {_describe(e)}"
            log.error("plugin %r failed to register its models: %s", report.name, report.error)
            pm.unregister(obj)
            return
    for spec in mine:
        specs[spec.name] = (spec, report.name)
    report.specs = mine
    log.info("plugin %r: %d spec(s): %s", report.name, len(mine), ", ".join(s.name for s in mine))

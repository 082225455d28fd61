"""The first-party tasks, registered through the same hook a third party uses.

The ``modelplex`` distribution declares this module as its entry point ``tasks`` in the
group ``modelplex``; nothing in the core names a task. Every subpackage of
:mod:`modelplex.tasks` with a ``task`` module defining ``TASK`` is registered, in the
order of their names, so that adding a first-party task adds a package and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

import modelplex.tasks
from modelplex.hookspecs import hookimpl
from modelplex.taskdef import TaskDefinition

__all__ = ["first_party_tasks", "register_tasks"]


def first_party_tasks() -> list[TaskDefinition]:
    """The ``TASK`` of every task package under :mod:`modelplex.tasks`."""
    tasks = []
    for info in sorted(pkgutil.iter_modules(modelplex.tasks.__path__), key=lambda m: m.name):
        if info.ispkg:
            module = importlib.import_module(f"modelplex.tasks.{info.name}.task")
            tasks.append(module.TASK)
    return tasks


@hookimpl
def register_tasks(register: Callable[[TaskDefinition], None]) -> None:
    """Register every first-party task (image classification, text generation, ...)."""
    for task in first_party_tasks():
        register(task)

"""The first-party tasks, registered through the same hook a third party uses.

The ``modelplex`` distribution declares this module as its entry point ``tasks`` in
the group ``modelplex``; nothing in the core names a task.
"""

from __future__ import annotations

from collections.abc import Callable

from modelplex.hookspecs import hookimpl
from modelplex.taskdef import TaskDefinition

__all__ = ["register_tasks"]


@hookimpl
def register_tasks(register: Callable[[TaskDefinition], None]) -> None:
    """Register image classification and text generation."""
    from modelplex.tasks.classification.task import TASK as classification
    from modelplex.tasks.text_generation.task import TASK as text_generation

    register(classification)
    register(text_generation)

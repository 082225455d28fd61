"""Per-task runtimes: how requests of a task reach a model's instances.

The registry picks the runtime class by the spec's task from :data:`RUNTIMES`;
adding a task adds an entry here, never a branch elsewhere.
"""

from __future__ import annotations

from modelplex.server.runtimes.base import TaskRuntime
from modelplex.server.runtimes.classification import ClassificationRuntime
from modelplex.server.runtimes.text_generation import TextGenerationRuntime
from modelplex.specs import Task

RUNTIMES: dict[Task, type[TaskRuntime]] = {
    Task.IMAGE_CLASSIFICATION: ClassificationRuntime,
    Task.TEXT_GENERATION: TextGenerationRuntime,
}

__all__ = ["RUNTIMES", "TaskRuntime"]

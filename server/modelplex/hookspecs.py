"""The plugin author's manual: every hook a modelplex plugin can implement.

A plugin is a module (or object) named by an entry point in the group
``modelplex``, in its distribution's ``pyproject.toml``::

    [project.entry-points.modelplex]
    my_models = "my_package.plugin"

The server imports that module at startup and calls the hooks below that it
implements, marked with :data:`modelplex.hookimpl`: first ``register_tasks`` of
every plugin, then ``register_models`` of every plugin (so a spec may name a task
that another plugin brings). Hooks are plain synchronous functions; an
implementation may accept any subset of a hook's arguments, so arguments added to
a hook later do not break existing plugins.

Each plugin's hooks are called on their own, through pluggy, so that one failing
plugin does not stop the others and each registration is credited to its plugin:
a plugin's own ``tryfirst``/``trylast`` ordering and ``wrapper=True``
implementations apply, but a wrapper sees only its own plugin's registrations.

Keep the plugin module cheap to import: no ``import torch`` at module level,
no weight loading, no network. Import heavy libraries inside the factory.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from modelplex.specs import ModelSpec
from modelplex.taskdef import TaskDefinition

PROJECT_NAME = "modelplex"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec", "register_models", "register_tasks"]


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register the model specs this plugin can serve.

    Called once per plugin at server startup, after the plugin is imported and
    before any model is loaded. Call ``register(spec)`` once per
    :class:`modelplex.ModelSpec`; return nothing.

    A spec whose name is already registered (by this or another plugin) is
    ignored and the clash is logged and shown in ListPlugins' ``error`` of this
    plugin; its other specs are served. ``register`` raises ``TypeError`` for
    anything but a ``ModelSpec``. An exception escaping this hook marks
    the plugin BROKEN: it is logged and listed by ListPlugins with its error, the
    specs it registered before raising are withdrawn, and the server serves the
    other plugins (in strict mode it refuses to start instead).

    Registration must be cheap: record descriptions only. The spec's factory is
    what loads weights, later, on the instance's worker thread.

    :param register: the callback that records one spec.
    """


@hookspec
def register_tasks(register: Callable[[TaskDefinition], None]) -> None:
    """Register the tasks this plugin brings: each its own gRPC API, served by the server.

    Called once per plugin at server startup, before any ``register_models``. Call
    ``register(task)`` once per :class:`modelplex.TaskDefinition`; return nothing. The
    server then adds the task's servicers, lists its services by reflection, reports them
    in grpc.health.v1 (and each model under ``modelplex.model/<name>``), and serves the
    specs of any plugin whose ``task`` is the task's id. The first-party tasks
    (``image_classification``, ``text_generation``) are registered the same way.

    A task whose id or one of whose service names is already registered is ignored, and
    the clash is logged and shown in ListPlugins' ``error`` of this plugin; its other tasks
    are served. ``register`` raises ``TypeError`` for anything but a ``TaskDefinition``.
    An exception escaping this hook marks the plugin BROKEN (its tasks and specs are
    withdrawn; in strict mode the server refuses to start).

    The task's generated protobuf modules are imported by the plugin module that builds
    the definition (so that their descriptors are in the default pool, which reflection
    serves); keep torch out of it.

    :param register: the callback that records one task.
    """

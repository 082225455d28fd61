"""The plugin author's manual: every hook a modelplex plugin can implement.

A plugin is a module (or object) named by an entry point in the group
``modelplex``, in its distribution's ``pyproject.toml``::

    [project.entry-points.modelplex]
    my_models = "my_package.plugin"

The server imports that module at startup and calls the hooks below that it
implements, marked with :data:`modelplex.hookimpl`. Hooks are plain synchronous
functions; an implementation may accept any subset of a hook's arguments, so
arguments added to a hook later do not break existing plugins.

Keep the plugin module cheap to import: no ``import torch`` at module level,
no weight loading, no network. Import heavy libraries inside the factory.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from modelplex.specs import ModelSpec

PROJECT_NAME = "modelplex"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec", "register_models"]


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

"""The plugin author's surface: one import, documented hooks, cheap registration."""

from __future__ import annotations

import inspect
import subprocess
import sys

import modelplex
from modelplex import hookspecs


def test_all_names_exist_and_are_documented():
    for name in modelplex.__all__:
        obj = getattr(modelplex, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"modelplex.{name} has no docstring"


def test_every_hook_is_documented():
    hooks = [f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "modelplex_spec")]
    assert hooks, "no hookspecs found"
    for hook in hooks:
        doc = inspect.getdoc(hook) or ""
        assert len(doc) > 200, f"hook {hook.__name__} needs a full docstring"
        for param in inspect.signature(hook).parameters:
            assert f":param {param}:" in doc, f"hook {hook.__name__} does not document {param}"


def test_public_surface_imports_no_torch():
    code = "import modelplex, modelplex.hookspecs, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_example_plugin_registers_without_importing_torch(example_plugins):
    code = (
        f"import sys; sys.path.insert(0, {str(example_plugins)!r});"
        "import modelplex_example.plugin as p; specs = [];"
        "p.register_models(specs.append); assert specs[0].name == 'dominant-color';"
        "assert 'torch' not in sys.modules, 'torch imported at registration'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_ships_py_typed():
    from importlib import resources

    assert resources.files("modelplex").joinpath("py.typed").is_file()
    assert resources.files("modelplex_client").joinpath("py.typed").is_file()

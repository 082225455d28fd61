"""The example third-party plugin, pip-installed as its own distribution, is
discovered through its entry point and served; the broken one beside it is
reported and does not stop the server."""

from __future__ import annotations

import pytest

from modelplex.testing import running_server
from modelplex_client import Client
from modelplex_client.pb import models_pb2

COLORS = {"models": [{"spec": "dominant-color", "devices": ["cpu"], "weights": "random"}]}


def test_third_party_plugin_is_served_and_broken_one_reported(example_plugins, make_image):
    with running_server(COLORS) as server, Client(server.address, timeout=10) as client:
        plugins = {p.name: p for p in client.list_plugins()}
        assert plugins["example_colors"].state == models_pb2.PLUGIN_STATE_ACTIVE
        assert plugins["example_colors"].distribution == "modelplex-example-plugin"
        assert [s.name for s in plugins["example_colors"].specs] == ["dominant-color"]
        assert plugins["broken_example"].state == models_pb2.PLUGIN_STATE_BROKEN
        assert "modelplex_dependency_that_is_not_installed" in plugins["broken_example"].error

        red, blue = make_image((250, 10, 10)), make_image((0, 0, 200))
        top = client.classify([red, blue], model="dominant-color", top_k=1)
        assert [t[0].label for t in top] == ["red", "blue"]
        assert client.health("modelplex.model/dominant-color") == "SERVING"


def test_strict_mode_refuses_to_start_with_a_broken_plugin(example_plugins):
    from modelplex.errors import PluginError

    with pytest.raises(PluginError, match="broken_example"):
        with running_server({**COLORS, "plugins": {"strict": True}}):
            pass


def test_block_and_allow_list(example_plugins):
    with (
        running_server({"plugins": {"block": ["broken_example"]}}) as server,
        Client(server.address) as client,
    ):
        names = {p.name: p.state for p in client.list_plugins()}
        assert names["broken_example"] == models_pb2.PLUGIN_STATE_SKIPPED
        assert names["example_colors"] == models_pb2.PLUGIN_STATE_ACTIVE
    with running_server({"plugins": {"autoload": False, "allow": ["example_colors"]}}) as server:
        with Client(server.address) as client:
            states = {p.name: p.state for p in client.list_plugins()}
    assert states["example_colors"] == models_pb2.PLUGIN_STATE_ACTIVE
    others = {n: s for n, s in states.items() if n not in ("example_colors", "tasks")}
    assert all(s == models_pb2.PLUGIN_STATE_SKIPPED for s in others.values())
    assert states["tasks"] == models_pb2.PLUGIN_STATE_ACTIVE  # the first-party tasks always load


def test_a_clashing_spec_is_ignored_and_reported_not_the_whole_plugin():
    from modelplex import ModelSpec, Task, hookimpl
    from modelplex.server.config import PluginSettings
    from modelplex.server.plugins import PluginState, discover

    def factory(ctx):
        raise AssertionError("never loaded")

    class First:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec("shared", Task.IMAGE_CLASSIFICATION, factory))

    class Second:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec("shared", Task.IMAGE_CLASSIFICATION, factory))
            register(ModelSpec("own", Task.IMAGE_CLASSIFICATION, factory))

    found = discover(PluginSettings(autoload=False), extra=[("first", First()), ("second", Second())])
    reports = {r.name: r for r in found.reports}
    assert found.specs["shared"][1] == "first" and found.specs["own"][1] == "second"
    assert reports["second"].state is PluginState.ACTIVE
    assert "spec 'shared' ignored: already registered by plugin 'first'" in reports["second"].error


def test_a_plugin_whose_hook_raises_is_broken_and_its_specs_withdrawn():
    from modelplex import ModelSpec, Task, hookimpl
    from modelplex.server.config import PluginSettings
    from modelplex.server.plugins import PluginState, discover

    class Half:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec("half", Task.IMAGE_CLASSIFICATION, lambda ctx: None))
            raise RuntimeError("config file missing")

    found = discover(PluginSettings(autoload=False), extra=[("half", Half())])
    assert found.reports[-1].state is PluginState.BROKEN
    assert "register_models failed: RuntimeError: config file missing" in found.reports[-1].error
    assert "half" not in found.specs

"""The conformance kit: what a plugin's own test suite runs against each of its specs.

A pytest plugin (entry point ``pytest11``), like pytest's ``pytester``: with modelplex
installed, any test can ask for the ``modelplex_conformance`` fixture, or call the
functions here directly::

    def test_my_spec_conforms(modelplex_conformance):
        modelplex_conformance.check_registration("my_models")        # the entry point's name
        modelplex_conformance.check_model({"spec": "my-model", "weights": "random", "devices": ["cpu"]})

:func:`check_registration` imports the plugin in a fresh interpreter with sockets
disabled and runs its hooks: registration must import no torch and open no connection.
:func:`check_model` starts a real server on 127.0.0.1, port 0, and over real gRPC checks
that the model loads with the given settings and weights and reports READY and SERVING;
that the task's services are listed by reflection; that a sample request succeeds and a
bad one gets INVALID_ARGUMENT (the task's :class:`~modelplex.taskdef.ConformanceProbes`,
or yours); that a cancelled stream frees its work (streaming tasks); and that unloading
frees the instance (its task object is garbage once unloaded). A failed check raises
AssertionError saying which and why.
"""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
import pytest

from modelplex.errors import ModelplexError
from modelplex.taskdef import ConformanceProbes

__all__ = ["check_model", "check_registration", "modelplex_conformance"]

_REGISTRATION_PROBE = r"""
import json, socket, sys
from importlib.metadata import entry_points

def refuse(*args, **kwargs):
    raise OSError("a plugin opened a network connection during registration")

socket.socket.connect = refuse
socket.create_connection = refuse
name, group = sys.argv[1], sys.argv[2]
[ep] = [e for e in entry_points(group=group) if e.name == name] or [None]
if ep is None:
    print(json.dumps({"error": f"no entry point {name!r} in group {group!r}"}))
    sys.exit(0)
import pluggy
from modelplex import hookspecs

plugin = ep.load()
pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
pm.add_hookspecs(hookspecs)
pm.register(plugin, name=name)  # through pluggy, as the server calls it
tasks, specs = [], []
pm.hook.register_tasks(register=tasks.append)
pm.hook.register_models(register=specs.append)
print(json.dumps({
    "torch": "torch" in sys.modules,
    "tasks": [t.id for t in tasks],
    "specs": [s.name for s in specs],
}))
"""


def check_registration(entry_point: str, *, group: str = "modelplex", sys_path: Iterable[str] = ()) -> dict[str, Any]:
    """Import the plugin named ``entry_point`` in a fresh interpreter, with sockets refused,
    and call its ``register_tasks`` and ``register_models``: they must succeed, register
    something, and leave torch unimported. Returns ``{"tasks": [...], "specs": [...]}``."""
    env_path = [*sys_path, *sys.path]
    code = "import sys; sys.path[:0] = " + json.dumps(env_path) + "\n" + _REGISTRATION_PROBE
    out = subprocess.run([sys.executable, "-c", code, entry_point, group], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"registering plugin {entry_point!r} failed:\n{out.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert "error" not in result, result.get("error")
    assert not result["torch"], f"plugin {entry_point!r} imports torch at registration: import it in the factory"
    assert result["tasks"] or result["specs"], f"plugin {entry_point!r} registered nothing"
    return result


def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
    """Poll ``condition()`` until true; AssertionError naming ``what`` after ``timeout`` s.
    (A bound against hanging, not a measure of speed.)"""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"conformance: {what} did not happen within {timeout:.0f} s"
        time.sleep(0.02)


def check_model(
    model: Mapping[str, Any],
    *,
    probes: ConformanceProbes | None = None,
    extra_plugins: Iterable[tuple[str, Any]] = (),
    server: Mapping[str, Any] | None = None,
) -> None:
    """Serve ``model`` (one ``[[models]]`` entry) on a real server and run every check on it
    (see the module doc). ``probes`` replaces the task's own calls (needed for a task that
    brings none); ``extra_plugins``: ``(name, plugin)`` pairs registered besides the installed
    plugins, as for :func:`modelplex.testing.running_server`. A load failure, a failing probe call
    and every failed check raise AssertionError."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from modelplex.testing import running_server
    from modelplex_client import Client

    config = {"models": [dict(model)], "server": dict(server or {})}
    name = str(model.get("name") or model["spec"])
    with contextlib.ExitStack() as stack:
        try:
            running = stack.enter_context(running_server(config, extra_plugins=extra_plugins))
        except ModelplexError as e:
            raise AssertionError(f"model {name!r} failed to load: {type(e).__name__}: {e}") from e
        loaded = running.server.registry.describe(name)
        task = loaded.plan.task
        probes = probes or task.conformance
        with Client(running.address, timeout=60) as client, grpc.insecure_channel(running.address) as channel:
            info = client.get_model(name)
            assert info.task == task.id, f"ModelInfo.task is {info.task!r}, not {task.id!r}"
            assert client.health(f"modelplex.model/{name}") == "SERVING", "the model's health is not SERVING"
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            answer = next(
                reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            )
            listed = {s.name for s in answer.list_services_response.service}
            health = health_pb2_grpc.HealthStub(channel)
            for service in task.services:
                assert service in listed, f"reflection does not list {service}"
                status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
                assert status == health_pb2.HealthCheckResponse.SERVING, f"{service} is not SERVING"
            if probes is not None:
                _run_probes(probes, channel, name, running)
            objects = [weakref.ref(i.model) for i in loaded.instances if i.model is not None]
            del loaded
            client.unload_model(name)
            assert client.list_models() == [], "the model is still listed after UnloadModel"
            assert client.health(f"modelplex.model/{name}") != "SERVING", "an unloaded model still reports SERVING"
        gc.collect()
        alive = sum(ref() is not None for ref in objects)
        assert not alive, f"{alive} task object(s) are still referenced after unloading: unload() must free them"


def _call(what: str, probe: Any, channel: grpc.Channel, name: str) -> None:
    """Run a probe that must succeed; its failure an AssertionError naming the call and status."""
    try:
        probe(channel, name)
    except grpc.RpcError as e:
        raise AssertionError(f"{what} failed: {e.code().name}: {e.details()}") from e


def _run_probes(probes: ConformanceProbes, channel: grpc.Channel, name: str, running: Any) -> None:
    _call("the sample request", probes.sample, channel, name)
    try:
        probes.invalid(channel, name)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"bad input got {e.code().name}: {e.details()}"
        assert e.details(), "bad input got INVALID_ARGUMENT without a message"
    else:
        raise AssertionError("a request with bad input succeeded")
    if probes.cancel is not None:
        _call("the cancelled stream", probes.cancel, channel, name)
        runtime = running.server.registry.describe(name).runtime
        _wait(lambda: runtime.active() == 0, "freeing the work of a cancelled stream")
    _call("the sample request after the bad one", probes.sample, channel, name)  # the model still serves


class _Kit:
    """What the ``modelplex_conformance`` fixture gives a test."""

    check_model = staticmethod(check_model)
    check_registration = staticmethod(check_registration)


@pytest.fixture
def modelplex_conformance() -> _Kit:
    """The conformance kit: ``check_registration(entry_point)`` and ``check_model(config)``."""
    return _Kit()

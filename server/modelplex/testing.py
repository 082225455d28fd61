"""Helpers for testing plugins against a real server over loopback.

    from modelplex.testing import running_server

    def test_my_model():
        config = {"models": [{"spec": "my-model", "weights": "random", "devices": ["cpu"]}]}
        with running_server(config) as server, Client(server.address) as client:
            assert client.classify([png_bytes], model="my-model")

The server runs on its own event loop in a background thread, on port 0,
with the plugins installed in the environment (plus any ``extra_plugins``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from modelplex.server.app import ModelServer
from modelplex.server.config import Config
from modelplex.server.devices import DeviceInventory

__all__ = ["RunningServer", "running_server"]

T = TypeVar("T")


class RunningServer:
    """A server started by :func:`running_server`."""

    def __init__(self, server: ModelServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop (e.g. ``server.registry.load(...)``)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def running_server(
    config: Config | Mapping[str, Any] | None = None,
    *,
    extra_plugins: Iterable[tuple[str, Any]] = (),
    inventory: DeviceInventory | None = None,
) -> Iterator[RunningServer]:
    """Start a server (a mapping: on 127.0.0.1, port 0, unless its ``server`` table says
    otherwise; a :class:`Config` as it is); stop it (grace 0) on exit."""
    if config is None:
        config = {}
    if not isinstance(config, Config):
        data = dict(config)
        data["server"] = {"host": "127.0.0.1", "port": 0, **data.get("server", {})}
        config = Config.model_validate(data)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="modelplex-test-server", daemon=True)
    thread.start()
    server = ModelServer(config, extra_plugins=extra_plugins, inventory=inventory)
    handle = RunningServer(server, loop)
    try:
        handle.call(server.start(), timeout=300)
        yield handle
    finally:
        try:
            handle.call(server.stop(grace=0))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

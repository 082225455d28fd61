"""Replicas behind the client's round robin, on loopback addresses 127.0.0.1/2/3: calls spread
over all three; one replica stopped mid-run costs no idempotent call; and max_connection_age
makes a long-lived channel behind an L4 balancer reach a replica added later (without it, the
channel stays on the first one)."""

from __future__ import annotations

import socket
import threading
from contextlib import ExitStack, contextmanager

import pytest

from modelplex.testing import running_server
from modelplex_client import Client
from modelplex_client.cli import main as cli
from probe_plugin import PLUGINS, probe_model

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


def _loopback_aliases_work() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _loopback_aliases_work(), reason="127.0.0.2 cannot be bound here")


def replica(stack: ExitStack, host: str, **server: object):
    """A server with the probe model on ``host``; returns it and its address."""
    config = {"models": [probe_model()], "server": {"host": host, **server}}
    s = stack.enter_context(running_server(config, extra_plugins=PLUGINS))
    return s, f"{host}:{s.server.port}"


def served(s) -> int:
    """Images the replica's model has classified (kept after the model is unloaded)."""
    return s.server.registry.get("probe", "image_classification").stats.outputs


def test_calls_spread_over_three_replicas_and_survive_one_stopping():
    with ExitStack() as stack:
        replicas = [replica(stack, host, grace_period_s=5) for host in HOSTS]
        runtimes = [s.server.registry.get("probe", "image_classification") for s, _ in replicas]
        with Client(",".join(a for _, a in replicas), timeout=20) as client:
            for i in range(30):
                assert client.classify([bytes([i])], model="probe")[0][0].index == i % 4
            spread = [r.stats.outputs for r in runtimes]
            assert sum(spread) == 30 and all(n > 0 for n in spread), spread

            failures: list[BaseException] = []
            done = [0]
            halfway = threading.Event()
            lock = threading.Lock()

            def calls() -> None:
                for i in range(30):
                    try:
                        client.classify([bytes([i])], model="probe")
                    except BaseException as e:  # noqa: BLE001 - recorded and asserted on below
                        failures.append(e)
                    with lock:
                        done[0] += 1
                        if done[0] == 40:
                            halfway.set()

            # Four callers at once, so that calls are in flight and arriving as the replica stops.
            workers = [threading.Thread(target=calls) for _ in range(4)]
            for w in workers:
                w.start()
            assert halfway.wait(60)
            stopped, _ = replicas[1]
            stopped.call(stopped.server.stop())  # graceful: refuse new calls, finish in-flight ones
            for w in workers:
                w.join(120)
            assert failures == []
            assert done[0] == 120
            # Every call was served exactly once: none lost, none run twice by a retry.
            assert sum(r.stats.outputs for r in runtimes) == 150
            after = [r.stats.outputs for r in runtimes]
            for i in range(10):
                client.classify([bytes([i])], model="probe")
            assert runtimes[1].stats.outputs == after[1]  # the stopped replica got nothing more
            assert runtimes[0].stats.outputs > after[0] and runtimes[2].stats.outputs > after[2]


def test_a_replica_whose_model_is_not_ready_costs_no_call():
    """The middle replica is still loading the model (UNAVAILABLE there): the service config's
    retry sends each such call on to another replica, and no call fails."""
    import asyncio

    from modelplex.server.config import ModelConfig
    from probe_plugin import PROBES

    with ExitStack() as stack:
        ready = [replica(stack, host) for host in (HOSTS[0], HOSTS[2])]
        config = {"models": [], "server": {"host": HOSTS[1]}}
        loading = stack.enter_context(running_server(config, extra_plugins=PLUGINS))
        blocked = ModelConfig.model_validate(probe_model(settings={"block_load": True}))
        load = asyncio.run_coroutine_threadsafe(loading.server.registry.load(blocked), loading.loop)
        try:
            targets = [ready[0][1], f"{HOSTS[1]}:{loading.server.port}", ready[1][1]]
            with Client(",".join(targets), timeout=20) as client:
                assert client.health() == "SERVING"  # every replica is up
                for i in range(30):
                    assert client.classify([bytes([i])], model="probe")[0][0].index == i % 4
            assert served(ready[0][0]) + served(ready[1][0]) == 30
        finally:
            PROBES["probe"].load_gate.set()
            load.result(30)


class Balancer:
    """An L4 balancer (what a Kubernetes ClusterIP Service does): each new TCP connection
    goes to the next backend of the list, round robin; bytes are copied both ways."""

    def __init__(self) -> None:
        self.backends: list[tuple[str, int]] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def add(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.backends.append((host, int(port)))

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            backend = self.backends[self.connections % len(self.backends)]
            self.connections += 1
            try:
                upstream = socket.create_connection(backend)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for s in self._sockets:
            s.close()


@contextmanager
def balancer():
    b = Balancer()
    try:
        yield b
    finally:
        b.close()


def calls_until(client: Client, condition, limit: int) -> int:
    """Classify one image at a time (a pause between) until ``condition()`` or ``limit`` calls."""
    for n in range(1, limit + 1):
        client.classify([b"\x01"], model="probe")
        if condition():
            return n
        threading.Event().wait(0.02)
    return limit


@pytest.mark.parametrize("max_age_s", [0.5, None], ids=["max_connection_age", "no_max_connection_age"])
def test_max_connection_age_lets_a_long_lived_channel_reach_a_replica_added_later(max_age_s):
    age = {"max_connection_age_s": max_age_s, "max_connection_age_grace_s": 0.5} if max_age_s else {}
    with ExitStack() as stack, balancer() as lb:
        first, first_address = replica(stack, HOSTS[0], **age)
        lb.add(first_address)
        with Client(lb.address, timeout=20) as client:
            for _ in range(5):
                client.classify([b"\x01"], model="probe")
            later, later_address = replica(stack, HOSTS[1], **age)
            lb.add(later_address)
            # Bounded in calls, never in time: 60 calls span several connection ages of 0.5 s.
            calls_until(client, lambda: served(later) > 0, limit=60)
            if max_age_s:
                assert served(later) > 0 and lb.connections >= 2
            else:
                assert served(later) == 0 and lb.connections == 1


def test_the_cli_takes_a_list_of_servers(capsys):
    with ExitStack() as stack:
        addresses = [replica(stack, host)[1] for host in HOSTS[:2]]
        assert cli(["models", "--server", ",".join(addresses)]) == 0
    assert "probe" in capsys.readouterr().out

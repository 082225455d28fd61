"""bench_peers.py's peers: their own virtual environment (pinned, made once), and the servers it
starts (modelplex, MLServer, PyTriton, the echo floor) with every process each one spawns, so that
their CPU is counted and nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as c

OIP = "/inference.GRPCInferenceService/ModelInfer"
PEERS_DIR = c.BENCH_DIR / "peers"
PINS = (
    "mlserver==1.7.1",
    "nvidia-pytriton==0.7.0",
    "torch==2.14.1",
    "torchvision==0.29.1",
    "numpy==1.26.4",  # what nvidia-pytriton 0.7.0 requires ...
    "pandas==2.3.3",  # ... and a pandas (MLServer's) that accepts it
    "uvloop==0.21.0",  # MLServer 1.7.1's parallel workers fail on 0.22+ (get_event_loop without a loop)
)
SHOWN = "mlserver nvidia-pytriton tritonclient torch torchvision numpy pandas uvloop grpcio protobuf".split()


# -- the peers' virtual environment -----------------------------------------------------------------


def peer_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def peer_versions(venv: Path) -> dict[str, str]:
    script = "import importlib.metadata as m, json, sys; print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    out = subprocess.run([peer_python(venv), "-c", script, *SHOWN], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def setup_venv(venv: Path) -> None:
    """A fresh virtual environment (no system site-packages) with ``PINS``."""
    print(f"creating {venv} with {' '.join(PINS)} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([peer_python(venv), "-m", "pip", "install", "--quiet", *PINS], check=True)
    print(f"installed in {venv}: {json.dumps(peer_versions(venv))}", file=sys.stderr)


def ensure_venv(venv: Path) -> dict[str, str]:
    """The peers' versions; the venv is set up first if it is not there. A version other than
    the pinned one stops the run (``--setup`` reinstalls)."""
    if not peer_python(venv).exists():
        setup_venv(venv)
    versions = peer_versions(venv)
    wrong = [pin for pin in PINS if versions[pin.split("==")[0]] != pin.split("==")[1]]
    if wrong:
        raise SystemExit(f"{venv} has {versions}, not {wrong}: run with --setup")
    return versions


def peer_env(venv: Path, threads: int) -> dict[str, str]:
    """The environment of a peer's server: its venv first, only benchmarks/peers on PYTHONPATH
    (nothing of modelplex), torch's threads set as for modelplex, and the directory of the
    interpreter's own libpython first on LD_LIBRARY_PATH: Triton's Python-backend stub links
    ``libpython3.X.so`` and otherwise finds the system's, older than the venv's standard library."""
    py = peer_python(venv)
    libdir = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"], capture_output=True, text=True
    ).stdout.strip()
    ld = os.pathsep.join(x for x in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if x)
    return {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "PYTHONPATH": str(PEERS_DIR),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "LD_LIBRARY_PATH": ld,
    }


# -- servers and the processes they start ----------------------------------------------------------


@dataclass
class Served:
    """A server in its own process and every process it started (snapshotted once it serves):
    its CPU time is the whole family's."""

    name: str
    address: str
    pid: int
    family: list[int]
    imports: dict[str, str] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.family:
            with contextlib.suppress(OSError):
                total += c.proc_cpu_seconds(pid)
        return total


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo += children.get(out[-1], [])
    return out


@contextlib.contextmanager
def served(server: contextlib.AbstractContextManager[c.ServerProcess], model: str | None) -> Iterator[Served]:
    """Enter ``server`` (stopped with SIGTERM on exit), wait until it reports ``model`` ready
    over OIP (when given) and yield it with its processes; a process of its family still
    running after the server stopped (the same process: same start time) is killed."""
    with server as proc:
        if model is not None:
            wait_model_ready(proc, model)
        family = {pid: start_time(pid) for pid in descendants(proc.pid)}
        yield Served(proc.name, proc.address, proc.pid, list(family), proc.imports)
    for pid, started in family.items():
        with contextlib.suppress(OSError):
            if start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)


def start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def wait_model_ready(proc: c.ServerProcess, model: str, timeout: float = 180) -> None:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(proc.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        while True:
            with contextlib.suppress(grpc.RpcError):
                if stub.ModelReady(service_pb2.ModelReadyRequest(name=model), timeout=5).ready:
                    return
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name}: {model} not ready:\n{proc.log_path.read_text()[-3000:]}")
            time.sleep(0.5)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def mlserver(wd: Path, venv: Path, model: str, workers: int, threads: int) -> contextlib.AbstractContextManager[Served]:
    """``mlserver start benchmarks/peers/mlserver/<model>`` (its model-settings.json), served on
    127.0.0.1, access logs off (``debug`` false), everything else MLServer's defaults."""
    grpc_port, http_port, metrics_port = free_ports(3)
    cwd = wd / f"mlserver-{model}-w{workers}"  # MLServer writes .metrics/ and .envs/ here
    cwd.mkdir()
    env = {
        **peer_env(venv, threads),
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_GRPC_PORT": str(grpc_port),
        "MLSERVER_HTTP_PORT": str(http_port),
        "MLSERVER_METRICS_PORT": str(metrics_port),
        "MLSERVER_DEBUG": "false",
        "MLSERVER_PARALLEL_WORKERS": str(workers),
    }
    argv = [str(venv / "bin" / "mlserver"), "start", str(PEERS_DIR / "mlserver" / model)]
    name = f"mlserver-{model}-w{workers}"
    proc = c.server_process(name, argv, ready="gRPC server running on http://", workdir=wd, env=env, cwd=cwd)
    return served(proc, model)


def pytriton(wd: Path, venv: Path, model: str, threads: int) -> contextlib.AbstractContextManager[Served]:
    ports = free_ports(3)
    argv = [str(peer_python(venv)), str(PEERS_DIR / "pytriton_serve.py"), "--model", model]
    argv += [f"--{k}-port={p}" for k, p in zip(("grpc", "http", "metrics"), ports, strict=True)]
    proc = c.server_process(
        f"pytriton-{model}", argv, ready="pytriton serving on ", workdir=wd, env=peer_env(venv, threads), cwd=wd
    )
    return served(proc, model)


def modelplex(wd: Path, site: Path, entry: dict[str, Any], threads: int) -> contextlib.AbstractContextManager[Served]:
    toml = c.config_toml(entry)
    name = f"modelplex-{entry['spec']}"
    return served(c.modelplex_server(wd, toml, site=site, torch_threads=threads, name=name), None)


def start_peers(
    stack: contextlib.ExitStack, wd: Path, args: argparse.Namespace, model: str, threads: int, failed: dict[str, str]
) -> dict[str, Served]:
    """MLServer (inference in a worker process, its default, and in the server process) and,
    unless left out, PyTriton; a PyTriton that cannot start is recorded in ``failed``."""
    peers = {
        "MLServer ModelInfer (parallel_workers=1, default)": stack.enter_context(
            mlserver(wd, args.venv, model, 1, threads)
        ),
        "MLServer ModelInfer (parallel_workers=0)": stack.enter_context(mlserver(wd, args.venv, model, 0, threads)),
    }
    if not args.no_pytriton:
        try:
            peers["PyTriton ModelInfer"] = stack.enter_context(pytriton(wd, args.venv, model, threads))
        except RuntimeError as e:
            failed[f"PyTriton ({model})"] = str(e)[-1500:]
            print(f"PyTriton did not start: {e}", file=sys.stderr)
    return peers

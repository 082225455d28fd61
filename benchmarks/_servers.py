"""The benchmarks' servers and models: which checkout's code a server runs (this one, or another
commit's for a same-run comparison), servers in subprocesses (modelplex, the bare echo floor)
stopped with SIGTERM, their configs, and models loaded in this process as the server loads them.

The measurement side (interleaved rounds, noise, statistics, tables, results) is in
``_common``, which re-exports these names, so a benchmark imports ``_common`` alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- where a server's code comes from -------------------------------------------------------------


class Tree:
    """A checkout whose server a benchmark runs: this one, or another commit's (made with
    ``git worktree add /tmp/prev COMMIT``) to compare the two in the same run."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        git = ["git", "-C", str(self.path)]
        self.commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
        self.commit = self.commit.strip() or "?"
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "server", "clients", "plugins"], capture_output=True, text=True
        )
        self.uncommitted = [line[3:] for line in dirty.stdout.splitlines() if line.strip()]
        self.label = self.commit + ("+" if self.uncommitted else "")
        """The short commit, with a ``+`` when its server, client or plugin files have uncommitted changes."""

    @property
    def pythonpath(self) -> list[Path]:
        """The tree's packages: the server, the Python client, each first-party plugin."""
        return [self.path / "server", self.path / "clients/python/src", *sorted(self.path.glob("plugins/*/src"))]

    @property
    def legacy(self) -> bool:
        """From before the task units (20449a6): a model's task settings (``max_batch_size``,
        ``max_new_tokens``) were keys of its ``settings`` table, not of the entry itself."""
        return not (self.path / "server" / "modelplex" / "taskdef.py").exists()


# SIGTERM (timeout, kill) unwinds like Ctrl-C, so that the servers started here are stopped too.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

# The benchmark process runs the code of the checkout it is in (the in-process models, the client).
sys.path[:0] = [str(p) for p in Tree(ROOT).pythonpath]


def trees(args: argparse.Namespace) -> list[Tree]:
    """This checkout, then the one of ``--compare-tree`` when given (labelled with its path too
    when both are the same commit)."""
    out = [Tree(ROOT)] + ([Tree(args.compare_tree)] if getattr(args, "compare_tree", None) else [])
    if len(out) == 2 and out[0].label == out[1].label:
        out[1].label += f" ({out[1].path})"
    return out


# -- processes --------------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server running in a subprocess."""

    name: str
    proc: subprocess.Popen[str]
    address: str
    log_path: Path
    imports: dict[str, str] = field(default_factory=dict)
    """Module -> the file the server's interpreter imports it from (checked before the start)."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process (all threads) so far."""
        return proc_cpu_seconds(self.pid)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def self_cpu_seconds() -> float:
    """CPU time of this process, all threads (grpc's C-core threads included)."""
    return proc_cpu_seconds(os.getpid())


@contextlib.contextmanager
def server_process(
    name: str, argv: Sequence[str], *, ready: str, workdir: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[ServerProcess]:
    """Start ``argv``, wait for a stdout line containing ``ready`` followed by ``host:port``,
    yield, then SIGTERM it (SIGKILL after 10 s). Its stderr goes to ``workdir/<name>.log``."""
    log_path = workdir / f"{name}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **(env or {})}, cwd=cwd
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name=f"{name}-stdout").start()
    try:
        deadline = time.monotonic() + 180
        address = None
        while address is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{name} did not print {ready!r} within 180 s") from None
            if line is None:
                raise RuntimeError(f"{name} exited with {proc.wait()} before serving:\n{log_path.read_text()[-4000:]}")
            if ready in line:
                address = line.split(ready, 1)[1].split()[0]
        yield ServerProcess(name, proc, address, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def echo_server(workdir: Path) -> contextlib.AbstractContextManager[ServerProcess]:
    """The floor: ``benchmarks/echo_server.py`` in its own process."""
    return server_process(
        "echo", [PY, str(BENCH_DIR / "echo_server.py"), "--port", "0"], ready="echo serving on ", workdir=workdir
    )


@contextlib.contextmanager
def modelplex_server(
    workdir: Path,
    toml: str,
    *,
    tree: Tree | None = None,
    site: Path | None = None,
    torch_threads: int | None = None,
    name: str = "modelplex",
) -> Iterator[ServerProcess]:
    """``python -m modelplex.server.cli --config <toml> --port 0`` in its own process, with the
    packages of ``tree`` (default: this checkout) first on its PYTHONPATH, then ``site`` (where
    :func:`install_example_plugin` put a plugin). Before starting it, the same interpreter and
    environment report where they import modelplex and the plugins from: a file outside the
    tree (or ``site``) is an error. Torch's thread count is set the standard way,
    OMP_NUM_THREADS, in the server's environment."""
    tree = tree or Tree(ROOT)
    config = workdir / f"{name}.toml"
    config.write_text(toml)
    paths = [*tree.pythonpath, *([site] if site else [])]
    env = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(map(str, paths))}
    if torch_threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(torch_threads)
    modules = ["modelplex.server.app", "modelplex_client", "modelplex_vision", "modelplex_text"]
    modules += sorted(p.parent.name for p in site.glob("*/__init__.py")) if site else []
    script = "import importlib, sys\nfor m in sys.argv[1:]:\n    print(m, importlib.import_module(m).__file__)"
    found = subprocess.run(
        [PY, "-c", script, *modules], env={**os.environ, **env}, cwd=tree.path, capture_output=True, text=True
    )
    imports = dict(line.split(" ", 1) for line in found.stdout.splitlines())
    stray = {m: f for m, f in imports.items() if not any(Path(f).is_relative_to(p) for p in paths)}
    if found.returncode or stray:
        raise RuntimeError(f"{name}: the server would import from outside {paths}: {stray or found.stderr[-2000:]}")
    argv = [PY, "-m", "modelplex.server.cli", "--config", str(config), "--port", "0"]
    with server_process(name, argv, ready="modelplex serving on ", env=env, workdir=workdir, cwd=tree.path) as proc:
        proc.imports = imports
        yield proc


PLUGINS = ("vision", "text", "example_colors")
"""The plugins the benchmarks load (besides the core's own tasks), not whatever else is installed."""


def config_toml(*models: dict[str, Any], plugins: Sequence[str] = PLUGINS) -> str:
    """A server config: warnings only, only the ``plugins`` named (the core's tasks load
    anyway), and ``models`` as its [[models]] entries (values: strings, numbers, lists, or a
    dict for an inline table)."""

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    lines = ["[server]", 'log_level = "warning"', "", "[plugins]", f"allow = {value(list(plugins))}"]
    for model in models:
        lines += ["", "[[models]]", *(f"{k} = {value(v)}" for k, v in model.items())]
    return "\n".join(lines) + "\n"


def install_example_plugin(target: Path, tree: Tree | None = None, *, importable: bool = True) -> Path:
    """pip-install ``tree``'s examples/modelplex-example-plugin into ``target`` (as tests/conftest.py
    does); with ``importable``, put it on this process's sys.path too. Returns ``target``."""
    source = (tree.path if tree else ROOT) / "examples" / "modelplex-example-plugin"
    pip = [PY, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target)]
    subprocess.run([*pip, str(source)], check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if importable and str(target) not in sys.path:
        sys.path.insert(0, str(target))
        import importlib

        importlib.invalidate_caches()
    return target


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="modelplex-bench-") as d:
        yield Path(d)


# -- in-process models -------------------------------------------------------------------------------


def load_in_process(
    loop: asyncio.AbstractEventLoop, model: dict[str, Any], plugins: Sequence[str] = PLUGINS
) -> tuple[Any, Any]:
    """Load a model in this process through the server's own registry (plugin discovery,
    settings validation, the spec's factory, load and warmup on the instance's thread),
    without gRPC. Returns the registry (``close()`` it on ``loop``) and its LoadedModel
    (``.instances[0].model``, ``.runtime``)."""
    from modelplex.server.config import ModelConfig, PluginSettings
    from modelplex.server.devices import DeviceInventory
    from modelplex.server.plugins import discover
    from modelplex.server.registry import ModelRegistry

    registry = ModelRegistry(discover(PluginSettings(allow=list(plugins))), DeviceInventory(0))
    return registry, loop.run_until_complete(registry.load(ModelConfig.model_validate(model)))


def build_in_process(model: dict[str, Any], plugins: Sequence[str] = PLUGINS) -> Any:
    """Build a model in this process and on this thread, the way an instance does (the registry's
    validation, then the spec's factory, load() and warmup()), but without the instance's
    worker thread: returns the plugin's model object (``preprocess``/``classify``).

    Use this, not :func:`load_in_process`, for a torch model with more than one intra-op
    thread: each thread that has run a parallel torch op keeps its own OpenMP team alive,
    and a second team in the process slows every forward on a small machine (see
    docs/benchmarks.md)."""
    from modelplex.server.config import ModelConfig, PluginSettings
    from modelplex.server.devices import DeviceInventory
    from modelplex.server.plugins import discover
    from modelplex.server.registry import ModelRegistry
    from modelplex.specs import LoadContext

    registry = ModelRegistry(discover(PluginSettings(allow=list(plugins))), DeviceInventory(0))
    plan = registry.plan(ModelConfig.model_validate(model))
    ctx = LoadContext(
        plan.name, plan.spec, plan.variant, plan.weights, plan.devices[0], plan.settings, plan.task_settings
    )
    obj = plan.spec.factory(ctx)
    obj.load()
    obj.warmup()
    return obj


def classify_inputs(shape: tuple[int, ...], model: str, torch_threads: int) -> tuple[Any, Any, Any, bytes]:
    """Set this process's torch threads; return a random FLOAT32 array of ``shape``, the
    RawTensor a server makes of it, a ClassifyRequest carrying it, and an echo payload as big
    as that request."""
    import numpy as np
    import torch

    from modelplex.tasks import RawTensor
    from modelplex_client._requests import classify_request

    torch.set_num_threads(torch_threads)
    array = np.random.default_rng(0).random(shape, dtype=np.float32)
    request = classify_request([array], model=model)
    return array, RawTensor(shape, "float32", array.tobytes()), request, b"x" * request.ByteSize()

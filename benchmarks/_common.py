"""The benchmarks' shared harness: servers in subprocesses (this checkout's, or another commit's
for a same-run comparison), timing in interleaved rounds, how busy the machine was, statistics,
tables and results.

Every server (modelplex or the bare echo floor) runs in its own process, started here and
stopped with SIGTERM; the clients run in the benchmark process, so client and server share
the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import gc
import itertools
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
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


# -- how busy the machine was -----------------------------------------------------------------------


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent busy so far (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class NoiseMonitor:
    """How much CPU processes other than ours used while benchmarking: on a 2-core machine
    another busy process shifts every number, so the results record it, and with
    ``max_wait`` > 0 (``--wait-quiet``) :meth:`guard` waits for a quiet machine first and
    redoes a round that another process disturbed."""

    def __init__(self, max_wait: float = 0.0, threshold: float = 0.15, attempts: int = 8) -> None:
        self.max_wait = max_wait
        self.threshold = threshold
        self.attempts = attempts
        self.pids: set[int] = {os.getpid()}
        self.redone = 0
        self.disturbed_kept = 0
        self.kept_others: list[float] = []
        self.before_start: float | None = None
        self._start = self.mark()

    def start(self, *servers: ServerProcess) -> None:
        """Count ``servers`` as ours, wait for a quiet machine (with ``max_wait``), and start
        the averages of :meth:`sample` now."""
        self.pids.update(s.pid for s in servers)
        if self.max_wait:
            self.before_start = self.wait_for_quiet()
        self._start = self.mark()

    def _ours(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                total += proc_cpu_seconds(pid)
        return total

    def mark(self) -> tuple[float, float, float]:
        return system_busy_seconds(), self._ours(), time.monotonic()

    def since(self, mark: tuple[float, float, float]) -> tuple[float, float]:
        """(cores used by ours, cores used by others) since ``mark``."""
        busy0, ours0, t0 = mark
        wall = max(1e-9, time.monotonic() - t0)
        ours = self._ours() - ours0
        others = system_busy_seconds() - busy0 - ours
        return ours / wall, max(0.0, others) / wall

    def wait_for_quiet(self, window: float = 3.0) -> float:
        """Wait (up to ``max_wait`` s) until other processes used under ``threshold`` cores over
        ``window`` s; return the cores they used in the last window."""
        start = time.monotonic()
        for i in itertools.count():
            mark = self.mark()
            time.sleep(window)
            others = self.since(mark)[1]
            if others < self.threshold or time.monotonic() > start + self.max_wait:
                if others >= self.threshold:
                    print(f"machine still busy ({others:.2f} cores used by others); measuring anyway", file=sys.stderr)
                return others
            if i % 10 == 0:
                print(f"waiting for a quiet machine ({others:.2f} cores used by others)", file=sys.stderr)
        raise AssertionError("unreachable")

    def _keep(self, others: float, attempt: int) -> bool:
        """Whether a round during which others used ``others`` cores is kept."""
        if others <= self.threshold or self.max_wait <= 0 or attempt == self.attempts - 1:
            if others > self.threshold and self.max_wait > 0:
                self.disturbed_kept += 1
            self.kept_others.append(others)
            return True
        self.redone += 1
        print(f"  round disturbed ({others:.2f} cores used by others): waiting, then redoing it", file=sys.stderr)
        self.wait_for_quiet()
        return False

    def guard(self, run: Callable[[], T]) -> T:
        """``run()``; while other processes used more than ``threshold`` cores meanwhile, wait
        (up to max_wait) for them to go idle and run it again (``attempts`` runs at most)."""
        for attempt in range(self.attempts):
            mark = self.mark()
            result = run()
            if self._keep(self.since(mark)[1], attempt):
                return result
        raise AssertionError("unreachable")

    async def guard_async(self, run: Callable[[], Awaitable[T]]) -> T:
        """:meth:`guard` for a coroutine function (the wait blocks the loop: run it when idle)."""
        for attempt in range(self.attempts):
            mark = self.mark()
            result = await run()
            if self._keep(self.since(mark)[1], attempt):
                return result
        raise AssertionError("unreachable")

    def sample(self) -> dict[str, Any]:
        """Average cores used since :meth:`start`; call it while the servers run."""
        ours, others = self.since(self._start)
        return {
            "wall_s": round(time.monotonic() - self._start[2], 1),
            "our_cores": round(ours, 2),
            "other_cores": round(others, 2),
            "loadavg_1m": float(Path("/proc/loadavg").read_text().split()[0]),
            "others_before_start_cores": self.before_start,
            "rounds_redone": self.redone,
            "disturbed_rounds_kept": self.disturbed_kept,
            "kept_rounds_max_other_cores": round(max(self.kept_others, default=0.0), 2),
        }


def noise_line(noise: dict[str, Any]) -> str:
    line = (
        f"While measuring ({noise['wall_s']} s), this benchmark's processes used {noise['our_cores']} cores "
        f"and other processes {noise['other_cores']} cores on average (1-min load average {noise['loadavg_1m']})."
    )
    if noise.get("rounds_redone"):
        line += (
            f" {noise['rounds_redone']} round(s) another process disturbed were redone; in the rounds kept,"
            f" other processes used at most {noise['kept_rounds_max_other_cores']} cores."
        )
    if noise.get("disturbed_rounds_kept"):
        line += f" **{noise['disturbed_rounds_kept']} disturbed round(s) had to be kept.**"
    elif noise["other_cores"] > 0.1 and not noise.get("rounds_redone"):
        line += " **Other processes were busy: these numbers are disturbed; rerun on a quiet machine.**"
    return line


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


# -- timing -------------------------------------------------------------------------------------------

Block = Callable[[int], list[float]]
"""Runs ``n`` calls and returns each call's latency in seconds."""


def sync_block(call: Callable[[], object], between: Callable[[], object] | None = None) -> Block:
    """``call`` timed ``n`` times in a row; with ``between``, each time after an untimed
    ``between()`` (e.g. an echo RPC), so that it runs as it does in a server: with caches and
    branch predictors cooled down by other work, not hot from a tight loop of itself."""

    def block(n: int) -> list[float]:
        out = []
        clock = time.perf_counter
        for _ in range(n):
            if between is not None:
                between()
            t0 = clock()
            call()
            out.append(clock() - t0)
        return out

    return block


def async_block(loop: asyncio.AbstractEventLoop, call: Callable[[], Awaitable[object]]) -> Block:
    """Sequential awaits of ``call()``, timed inside the running loop."""

    async def run(n: int) -> list[float]:
        out = []
        clock = time.perf_counter
        for _ in range(n):
            t0 = clock()
            await call()
            out.append(clock() - t0)
        return out

    return lambda n: loop.run_until_complete(run(n))


def interleaved(
    blocks: dict[str, Block], *, requests: int, warmup: int, rounds: int, monitor: NoiseMonitor
) -> dict[str, list[list[float]]]:
    """Warm each block up, then run ``rounds`` rounds in which each block makes
    ``requests / rounds`` calls (in reverse order every other round), so that slow drift of
    the machine hits every configuration alike; a round another process disturbed is redone
    (``--wait-quiet``). Returns each block's latencies, one list per round."""
    for block in blocks.values():
        block(warmup)
    per_round = max(1, requests // rounds)
    samples: dict[str, list[list[float]]] = {name: [] for name in blocks}

    def one_round(order: list[str]) -> dict[str, list[float]]:
        out = {}
        for name in order:
            gc.collect()
            out[name] = blocks[name](per_round)
            time.sleep(0.02)
        return out

    for r in range(rounds):
        for name, xs in monitor.guard(lambda r=r: one_round(alternate(list(blocks), r))).items():
            samples[name].append(xs)
    return samples


def alternate(items: Sequence[T], round_index: int) -> list[T]:
    """``items`` in order in even rounds and reversed in odd ones: no configuration always
    runs first, or right after the same other one."""
    return list(items)[:: -1 if round_index % 2 else 1]


async def run_concurrent(
    call: Callable[[], Awaitable[object]], *, concurrency: int, requests: int
) -> tuple[float, list[float]]:
    """``concurrency`` tasks calling ``call()`` back to back until ``requests`` calls were
    started; returns (wall seconds, each call's latency)."""
    started = 0
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal started
        while started < requests:
            started += 1
            t0 = clock()
            await call()
            latencies.append(clock() - t0)

    t0 = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return clock() - t0, latencies


# -- statistics and output --------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    xs = sorted(samples)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(rounds: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Latency statistics in microseconds over all rounds, and each round's p50."""
    us = [s * 1e6 for r in rounds for s in r]
    return {
        "n": len(us),
        "p50_us": percentile(us, 50),
        "p90_us": percentile(us, 90),
        "p99_us": percentile(us, 99),
        "mean_us": sum(us) / len(us),
        "min_us": min(us),
        "p50_us_rounds": [percentile([s * 1e6 for s in r], 50) for r in rounds],
    }


def num(v: float) -> str:
    """Three significant figures or so, thousands separated."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def spread(values: Sequence[float]) -> str:
    """``median (min–max)``."""
    return f"{num(statistics.median(values))} ({num(min(values))}–{num(max(values))})"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(num(v) if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def comparison(labels: Sequence[str], metrics: dict[str, tuple[Sequence[float], Sequence[float]]]) -> str:
    """A table of each metric's per-round values under two trees (median and range), the ratio
    of their medians and the range of the per-round ratios (rounds alternate the two trees)."""
    rows = []
    for name, (a, b) in metrics.items():
        ratios = [x / y for x, y in zip(a, b, strict=True) if y]
        rows.append(
            [
                name,
                spread(a),
                spread(b),
                f"{statistics.median(a) / statistics.median(b):.3f}",
                f"{min(ratios):.2f}–{max(ratios):.2f}",
            ]
        )
    return table(["metric (per round)", labels[0], labels[1], "ratio of medians", "per-round ratios"], rows)


def machine_info(trees: Sequence[Tree] = (), torch_threads: int | None = None) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import grpc

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "sched_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
        "trees": [{"path": str(t.path), "commit": t.commit, "uncommitted": t.uncommitted} for t in trees],
    }
    with contextlib.suppress(ImportError):
        import google.protobuf

        info["protobuf"] = google.protobuf.__version__
    with contextlib.suppress(ImportError):
        import torch

        info["torch"] = torch.__version__
    if torch_threads is not None:
        info["torch_threads"] = torch_threads
    return info


def finish(name: str, args: argparse.Namespace, report: str, payload: dict[str, Any]) -> None:
    """Print the report; unless ``--no-write``, write it with ``payload`` to
    ``benchmarks/results/<name>-<UTC time>.json`` and ``<name>-latest.json``."""
    print(report)
    if args.no_write:
        return
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(
        {"benchmark": name, "utc": stamp, "args": vars(args), **payload, "markdown": report}, indent=2, default=str
    )
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    print(f"\nresults: {path.relative_to(ROOT)}", file=sys.stderr)


def add_run_arguments(p: argparse.ArgumentParser, *, compare: bool = False) -> None:
    """--wait-quiet and --no-write, which every benchmark takes; with ``compare``, --compare-tree."""
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait up to SECONDS for other processes to go idle first, and redo rounds they disturb",
    )
    p.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/*.json")
    if compare:
        p.add_argument(
            "--compare-tree",
            type=Path,
            metavar="DIR",
            help="also serve from this checkout of another commit (git worktree add /tmp/prev COMMIT), "
            "alternating with this one in every round, and report both side by side",
        )

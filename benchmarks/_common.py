"""Shared plumbing of the benchmarks: server subprocesses, timing, statistics, results.

Every server (modelplex or the bare echo floor) runs in its own process, started
here and stopped with SIGTERM; the client side runs in the benchmark process, so
client and server share the machine's cores, as the peer numbers were measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes ------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server running in a subprocess."""

    name: str
    proc: subprocess.Popen[str]
    address: str
    log_path: Path

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


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent busy so far (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class NoiseMonitor:
    """How much CPU processes other than ours used while benchmarking: on a 2-core machine
    another busy process shifts every number, so the results record it, and with
    ``max_wait`` > 0 :meth:`guard` reruns a round that another process disturbed."""

    def __init__(self, max_wait: float = 0.0, threshold: float = 0.15, attempts: int = 8) -> None:
        self.max_wait = max_wait
        self.threshold = threshold
        self.attempts = attempts
        self.pids: set[int] = {os.getpid()}
        self.redone = 0
        self.disturbed_kept = 0
        self.kept_others: list[float] = []
        self._start = self.mark()

    def add(self, pid: int) -> None:
        """Count ``pid`` (a server) as ours; call it before measuring."""
        self.pids.add(pid)
        self._start = self.mark()

    def restart(self) -> None:
        """Start the averages of :meth:`sample` now."""
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

    def _keep(self, others: float, attempt: int) -> bool:
        """Whether a round during which others used ``others`` cores is kept."""
        if others <= self.threshold or self.max_wait <= 0 or attempt == self.attempts - 1:
            if others > self.threshold and self.max_wait > 0:
                self.disturbed_kept += 1
            self.kept_others.append(others)
            return True
        self.redone += 1
        print(f"  round disturbed ({others:.2f} cores used by others): waiting, then redoing it", file=sys.stderr)
        wait_for_quiet(self.max_wait, self.threshold, pids=self.pids)
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

    def sample(self) -> dict[str, float]:
        """Average cores used since the start (or the last add()); call it while the servers run."""
        ours, others = self.since(self._start)
        return {
            "wall_s": round(time.monotonic() - self._start[2], 1),
            "our_cores": round(ours, 2),
            "other_cores": round(others, 2),
            "loadavg_1m": float(Path("/proc/loadavg").read_text().split()[0]),
            "rounds_redone": self.redone,
            "disturbed_rounds_kept": self.disturbed_kept,
            "kept_rounds_max_other_cores": round(max(self.kept_others, default=0.0), 2),
        }


def noise_line(noise: dict[str, float]) -> str:
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


def wait_for_quiet(max_wait: float, threshold: float = 0.15, window: float = 3.0, pids: Iterable[int] = ()) -> float:
    """Wait (up to ``max_wait`` s) until the machine's other processes used under ``threshold``
    cores over ``window`` s; return the cores they used in the last window. Processes in
    ``pids`` (and this one) count as ours."""
    ours_pids = {os.getpid(), *pids}

    def ours() -> float:
        total = 0.0
        for pid in ours_pids:
            with contextlib.suppress(OSError):
                total += proc_cpu_seconds(pid)
        return total

    deadline = time.monotonic() + max_wait
    while True:
        busy0, ours0, t0 = system_busy_seconds(), ours(), time.monotonic()
        time.sleep(window)
        others = (system_busy_seconds() - busy0 - (ours() - ours0)) / (time.monotonic() - t0)
        if others < threshold or time.monotonic() > deadline:
            if others >= threshold:
                print(f"machine still busy ({others:.2f} cores used by others); measuring anyway", file=sys.stderr)
            return others
        print(f"waiting for a quiet machine ({others:.2f} cores used by others)", file=sys.stderr)


def self_cpu_seconds() -> float:
    """CPU time of this process, all threads (grpc's C-core threads included)."""
    return proc_cpu_seconds(os.getpid())


@contextlib.contextmanager
def server_process(
    name: str,
    argv: Sequence[str],
    *,
    ready: str,
    env: dict[str, str] | None = None,
    workdir: Path,
    timeout: float = 180.0,
) -> Iterator[ServerProcess]:
    """Start ``argv``, wait for a stdout line containing ``ready`` followed by ``host:port``,
    yield, then SIGTERM it (SIGKILL after 10 s). Its stderr goes to ``workdir/<name>.log``."""
    log_path = workdir / f"{name}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **(env or {})}, cwd=ROOT
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name=f"{name}-stdout").start()
    try:
        deadline = time.monotonic() + timeout
        address = None
        while address is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{name} did not print {ready!r} within {timeout:.0f}s") from None
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


def modelplex_server(
    workdir: Path,
    config_toml: str,
    *,
    pythonpath: Sequence[Path] = (),
    torch_threads: int | None = None,
    name: str = "modelplex",
    whatif: Sequence[str] | None = None,
) -> contextlib.AbstractContextManager[ServerProcess]:
    """``python -m modelplex.server.cli --config <toml> --port 0`` in its own process.

    The server has no setting for torch's thread count, so it is set the standard
    way, with OMP_NUM_THREADS (and MKL_NUM_THREADS) in the server's environment.
    With ``whatif`` (a list of flags, possibly empty), the server is started through
    ``benchmarks/whatif_server.py`` with those experimental patches instead.
    """
    config = workdir / f"{name}.toml"
    config.write_text(config_toml)
    env = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    if torch_threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(torch_threads)
    cli = ["--config", str(config), "--port", "0"]
    if whatif is None:
        argv = [PY, "-m", "modelplex.server.cli", *cli]
    else:
        argv = [PY, str(BENCH_DIR / "whatif_server.py"), *whatif, "--", *cli]
    return server_process(name, argv, ready="modelplex serving on ", env=env, workdir=workdir)


def install_example_plugin(target: Path) -> Path:
    """pip-install examples/modelplex-example-plugin into ``target`` (as tests/conftest.py does)
    and put it on this process's sys.path; return ``target`` for the server's PYTHONPATH."""
    subprocess.run(
        [
            PY,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT / "examples" / "modelplex-example-plugin"),
        ],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    import importlib

    importlib.invalidate_caches()
    return target


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="modelplex-bench-") as d:
        yield Path(d)


# -- in-process model ------------------------------------------------------------------------


def load_in_process(loop: asyncio.AbstractEventLoop, model: dict[str, Any]) -> Any:
    """Load a model in this process through the server's own registry (plugin discovery,
    settings validation, the spec's factory, load and warmup on the instance's thread),
    without gRPC. Returns the registry's LoadedModel (``.instances[0].model``, ``.runtime``)."""
    from modelplex.server.config import ModelConfig, PluginSettings
    from modelplex.server.devices import DeviceInventory
    from modelplex.server.plugins import discover
    from modelplex.server.registry import ModelRegistry

    registry = ModelRegistry(discover(PluginSettings()), DeviceInventory(0))
    return loop.run_until_complete(registry.load(ModelConfig.model_validate(model)))


def build_in_process(model: dict[str, Any]) -> Any:
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

    registry = ModelRegistry(discover(PluginSettings()), DeviceInventory(0))
    plan = registry.plan(ModelConfig.model_validate(model))
    ctx = LoadContext(
        model_name=plan.name,
        spec=plan.spec,
        variant=plan.variant,
        weights=plan.weights,
        device=plan.devices[0],
        settings=plan.settings,
        max_batch_size=plan.config.max_batch_size,
    )
    obj = plan.spec.factory(ctx)
    obj.load()
    obj.warmup()
    return obj


def unload_in_process(loop: asyncio.AbstractEventLoop, loaded: Any) -> None:
    """Stop the runtime and close the instances of a model from :func:`load_in_process`, close the loop."""

    async def unload() -> None:
        if loaded.runtime is not None:
            await loaded.runtime.stop()
        await asyncio.gather(*(inst.close() for inst in loaded.instances))

    loop.run_until_complete(unload())
    loop.close()


# -- timing -------------------------------------------------------------------------------------

Block = Callable[[int], list[float]]
"""Runs ``n`` calls and returns each call's latency in seconds."""


def sync_block(call: Callable[[], object]) -> Block:
    def block(n: int) -> list[float]:
        out = []
        clock = time.perf_counter
        for _ in range(n):
            t0 = clock()
            call()
            out.append(clock() - t0)
        return out

    return block


def between_block(call: Callable[[], object], between: Callable[[], object]) -> Block:
    """``call`` timed alone, each time after an untimed ``between()`` (e.g. an echo RPC), so
    that it runs as it does in a server: with caches and branch predictors cooled down by
    other work, not hot from a tight loop of itself."""

    def block(n: int) -> list[float]:
        out = []
        clock = time.perf_counter
        for _ in range(n):
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
    blocks: dict[str, Block], *, requests: int, warmup: int, rounds: int, monitor: NoiseMonitor | None = None
) -> dict[str, list[float]]:
    """Warm each block up, then run ``rounds`` rounds in which each block makes
    ``requests / rounds`` calls, so that slow drift of the machine hits every
    configuration alike; with a monitor, a round another process disturbed is redone.
    Returns every latency of every block."""
    for block in blocks.values():
        block(warmup)
    per_round = max(1, requests // rounds)
    samples: dict[str, list[float]] = {name: [] for name in blocks}

    def one_round() -> dict[str, list[float]]:
        out = {}
        for name, block in blocks.items():
            gc.collect()
            out[name] = block(per_round)
            time.sleep(0.02)
        return out

    for _ in range(rounds):
        result = monitor.guard(one_round) if monitor else one_round()
        for name, xs in result.items():
            samples[name].extend(xs)
    return samples


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


# -- statistics and output ------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    xs = sorted(samples)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Latency statistics in microseconds."""
    us = [s * 1e6 for s in samples]
    return {
        "n": len(us),
        "p50_us": percentile(us, 50),
        "p90_us": percentile(us, 90),
        "p99_us": percentile(us, 99),
        "mean_us": sum(us) / len(us),
        "min_us": min(us),
    }


def machine_info(torch_threads: int | None = None) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "sched_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    import grpc

    info["grpcio"] = grpc.__version__
    with contextlib.suppress(ImportError):
        import google.protobuf

        info["protobuf"] = google.protobuf.__version__
    with contextlib.suppress(ImportError):
        import torch

        info["torch"] = torch.__version__
        info["torch_threads_client_process"] = torch.get_num_threads()
    if torch_threads is not None:
        info["torch_threads"] = torch_threads
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "-C", str(ROOT)]
        info["git_commit"] = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "server", "clients", "plugins", "examples"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        info["git_uncommitted_server_files"] = [line[3:] for line in dirty if line.strip()]
    return info


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>-<UTC time>.json`` and ``<name>-latest.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {"benchmark": name, "utc": stamp, **payload}
    text = json.dumps(payload, indent=2, default=str)
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--wait-quiet and --no-write, which every benchmark takes."""
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait up to SECONDS for other processes to go idle first, and redo rounds they disturb",
    )
    p.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/*.json")

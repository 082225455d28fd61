"""The benchmarks' shared harness: timing in interleaved rounds, how busy the machine was,
statistics, tables and results; and, re-exported from ``_servers``, the servers in
subprocesses (this checkout's, or another commit's for a same-run comparison) and the models
loaded in this process.

Every server (modelplex or the bare echo floor) runs in its own process, started in
``_servers`` and stopped with SIGTERM; the clients run in the benchmark process, so client and
server share the machine's cores.
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
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from _servers import (  # noqa: F401  (re-exported: a benchmark imports _common alone)
    BENCH_DIR,
    CLK_TCK,
    PLUGINS,
    PY,
    ROOT,
    ServerProcess,
    Tree,
    build_in_process,
    classify_inputs,
    config_toml,
    echo_server,
    install_example_plugin,
    load_in_process,
    modelplex_server,
    proc_cpu_seconds,
    self_cpu_seconds,
    server_process,
    trees,
    workdir,
)

T = TypeVar("T")

RESULTS_DIR = BENCH_DIR / "results"


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


def machine_info(checkouts: Sequence[Tree] = (), torch_threads: int | None = None) -> dict[str, Any]:
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
        "trees": [{"path": str(t.path), "commit": t.commit, "uncommitted": t.uncommitted} for t in checkouts],
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

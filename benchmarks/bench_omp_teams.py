"""A second thread that has run a torch forward slows every forward in the process.

modelplex runs each model instance on its own thread. With torch's OpenMP backend,
each thread that runs a parallel op gets its own OpenMP team of
torch.get_num_threads() threads, which stays alive as long as that thread does. Once a
process holds more OpenMP threads than the machine has cores, libgomp stops
spin-waiting between parallel regions, and every one of the many parallel regions of a
forward pays a thread wake-up. This measures resnet18's batch-1 forward on the main
thread, in rounds:

* alone;
* while another live thread has run one forward with the same thread count (a second
  CPU model or instance in a modelplex server, idle);
* while another live thread has run one forward after torch.set_num_threads(1) there.

    python benchmarks/bench_omp_teams.py [--threads 2] [--rounds 4] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--forwards", type=int, default=20, help="timed forwards per configuration per round")
    p.add_argument("--quick", action="store_true", help="2 rounds of 5 forwards")
    c.add_run_arguments(p)
    args = p.parse_args()
    if args.quick:
        args.rounds, args.forwards = 2, 5

    import torch
    import torchvision

    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, 224, 224)
    net = torchvision.models.resnet18().eval()

    def p50_forward() -> float:
        with torch.inference_mode():
            for _ in range(2):
                net(x)
            xs = []
            for _ in range(args.forwards):
                t0 = time.perf_counter()
                net(x)
                xs.append(time.perf_counter() - t0)
        return statistics.median(xs) * 1e3

    def with_other_thread(other_threads: int | None) -> float:
        ran, done = threading.Event(), threading.Event()

        def other() -> None:
            if other_threads is not None:
                torch.set_num_threads(other_threads)
            with torch.inference_mode():
                net(x)
            ran.set()
            done.wait()

        t = threading.Thread(target=other)
        t.start()
        ran.wait()
        time.sleep(0.1)
        try:
            return p50_forward()
        finally:
            done.set()
            t.join()

    configs = {
        "alone": p50_forward,
        f"another live thread ran a forward ({args.threads} threads)": lambda: with_other_thread(None),
        "another live thread ran a forward (set_num_threads(1) there)": lambda: with_other_thread(1),
    }
    results: dict[str, list[float]] = {k: [] for k in configs}
    monitor = c.NoiseMonitor(max_wait=args.wait_quiet)
    monitor.start()
    for _ in range(args.rounds):
        for key, value in monitor.guard(lambda: {name: run() for name, run in configs.items()}).items():
            results[key].append(value)
    noise = monitor.sample()
    base = statistics.median(results["alone"])
    rows = [
        [k, statistics.median(v), f"{statistics.median(v) / base:.2f}x", " ".join(f"{a:.1f}" for a in v)]
        for k, v in results.items()
    ]
    report = (
        c.noise_line(noise)
        + "\n\n"
        + (
            f"### resnet18 batch-1 forward on the main thread, torch threads {args.threads}, {os.cpu_count()} cores\n\n"
            + c.table(["configuration", "median of round p50s, ms", "vs alone", "each round's p50, ms"], rows)
        )
    )
    c.finish(
        "omp-teams", args, report, {"machine": c.machine_info((), args.threads), "p50_ms": results, "noise": noise}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

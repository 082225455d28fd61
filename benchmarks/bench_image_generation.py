"""Image generation served over gRPC against the same generator called in-process.

Full-size architectures with random weights on the CPU: DCGAN as in PyTorch's example
(nz 100, ngf 64, 64x64 RGB) and StyleGAN2 config-f (rosinality's layout, 256x256 by default).

* In this process: the imagegen plugin's factory builds the generator (load and warm-up),
  then images per second of ``model.generate`` on batches of 1, 4 and 16 (latents sampled
  per image as the runtime does; FLOAT32 out, no encoding), all on one worker thread as a
  server instance does: on this machine a forward on the main thread of a process was up to
  20 times slower than on a second thread while other processes loaded the cores (the main
  thread's OpenMP team spin-waits; see bench_omp_teams.py), which would flatter the server.
* Served: one server process per batch size (``max_batch_size`` 1, 4, 16), and 1, 4 and 16
  concurrent callers (one grpc.aio channel each, one event loop), each asking back to back for
  one image (FLOAT32, so no PNG encoding on either side). Images per second over the run.

The ratio is served images/s over in-process images/s at the same batch size, measured in the
same run, in interleaved rounds. Torch's intra-op threads are 1 by default in the servers
(OMP_NUM_THREADS) and here (``--torch-threads``): on this 2-core machine, shared with other
processes, 2 threads made a DCGAN forward 5 to 25 times slower and its timings erratic (an
OpenMP barrier waits for a descheduled thread), while 1 thread gave steady rates; and the
server and its callers share the cores anyway.

    python benchmarks/bench_image_generation.py             # DCGAN and StyleGAN2-256, ~10 min on 2 cores
    python benchmarks/bench_image_generation.py --quick     # fewer images, StyleGAN2 at 128
    python benchmarks/bench_image_generation.py --families stylegan2 --images 4 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (1, 4, 16)
CALLERS = (1, 4, 16)


def family_settings(family: str, size: int) -> tuple[str, dict[str, Any]]:
    if family == "dcgan":
        return "dcgan", {"nz": 100, "ngf": 64, "nc": 3, "image_size": 64}
    return "stylegan2", {"size": size, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "truncation_mean": 256}


def load_in_process(spec_name: str, settings: dict[str, Any]) -> Any:
    """The plugin's generator, built by its factory in this process (load and warm-up)."""
    import importlib

    from modelplex.specs import LoadContext, WeightsChoice

    plugin = importlib.import_module("modelplex_imagegen.plugin")  # the installed plugin, as the server finds it
    spec = {s.name: s for s in plugin.build_specs()}[spec_name]
    ctx = LoadContext(
        spec_name, spec, spec.variant(None), WeightsChoice.parse("random"), "cpu", spec.settings(**settings)
    )
    model = spec.factory(ctx)
    model.load()
    model.warmup()
    return model


def in_process_rate(model: Any, batch: int, images: int) -> float:
    """Images per second of ``model.generate`` on batches of ``batch``, latents sampled per image."""
    import torch

    from modelplex.tasks.image_generation import ImageInput

    done, seed, started = 0, 0, time.perf_counter()
    while done < max(images, batch):
        inputs = []
        for _ in range(batch):
            g = torch.Generator().manual_seed(seed)
            inputs.append(ImageInput(model.sample_latent(g, 1.0), None, 1.0, g))
            seed += 1
        with torch.inference_mode():
            model.generate(inputs)
        done += batch
    return done / (time.perf_counter() - started)


@contextlib.contextmanager
def server(spec_name: str, settings: dict[str, Any], batch: int, workdir: Path, threads: int) -> Iterator[str]:
    """A modelplex server process serving one model; yields its address."""
    config = workdir / f"{spec_name}-{batch}.toml"
    pairs = ", ".join(f"{k} = {v}" for k, v in settings.items())
    config.write_text(
        f'[server]\nlog_level = "warning"\n\n[[models]]\nspec = "{spec_name}"\nweights = "random"\n'
        f'devices = ["cpu"]\nmax_batch_size = {batch}\nmax_queue_size = 4096\nsettings = {{ {pairs} }}\n'
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "modelplex.server.cli", "--config", str(config), "--port", "0"]
    log = (workdir / f"{spec_name}-{batch}.log").open("w")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "modelplex serving on " in line:
                yield line.split("modelplex serving on ", 1)[1].split()[0]
                break
        else:
            raise RuntimeError(f"the server exited: see {log.name}")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


async def served_rate(address: str, model: str, callers: int, images: int) -> float:
    """Images per second with ``callers`` concurrent callers asking for one image at a time."""
    from grpc import aio

    from modelplex_client.pb import image_generation_pb2 as pb
    from modelplex_client.pb import image_generation_pb2_grpc as pb_grpc

    channels = [aio.insecure_channel(address) for _ in range(callers)]
    stubs = [pb_grpc.ImageGenerationStub(ch) for ch in channels]
    output = pb.ImageOutput(format=pb.IMAGE_FORMAT_FLOAT32)
    left = max(images, callers)

    async def one(stub: Any, seed: int) -> None:
        async for _ in stub.Generate(
            pb.ImageGenerationGenerateRequest(model=model, num_images=1, seed=seed, output=output)
        ):
            pass

    async def caller(i: int) -> int:
        nonlocal left
        done = 0
        while left > 0:
            left -= 1
            await one(stubs[i], i * 100_000 + done)
            done += 1
        return done

    await asyncio.gather(*(one(s, 0) for s in stubs))  # connect and warm each channel
    started = time.perf_counter()
    counts = await asyncio.gather(*(caller(i) for i in range(callers)))
    elapsed = time.perf_counter() - started
    for ch in channels:
        await ch.close()
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images; StyleGAN2 at 128x128")
    parser.add_argument("--families", default="dcgan,stylegan2")
    parser.add_argument("--stylegan2-size", type=int, default=None, help="default 256 (128 with --quick)")
    parser.add_argument("--images", type=int, default=None, help="images per measurement (at least the callers)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; 2 with --quick)")
    parser.add_argument("--torch-threads", type=int, default=1, help="intra-op threads, server and here (default 1)")
    args = parser.parse_args()
    import torch

    threads = args.torch_threads
    size = args.stylegan2_size or (128 if args.quick else 256)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {threads} torch threads; StyleGAN2 at {size}x{size}\n")
    rounds = args.rounds or (2 if args.quick else 3)
    # Like a server instance's thread; the thread count is per thread with OpenMP.
    worker = ThreadPoolExecutor(
        1, thread_name_prefix="in-process", initializer=torch.set_num_threads, initargs=(threads,)
    )
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            spec_name, settings = family_settings(family, size)
            heavy = family == "stylegan2"
            images = args.images or ((8 if args.quick else 16) if heavy else (48 if args.quick else 128))
            model = worker.submit(load_in_process, spec_name, settings).result()
            rows = []
            for batch in BATCHES:
                with server(spec_name, settings, batch, Path(tmp), threads) as address:
                    # Rounds interleave the in-process and served runs, so that a busy moment of
                    # the machine weighs on both; the ratio is the median of the rounds' ratios.
                    local: list[float] = []
                    served: dict[int, list[float]] = {c: [] for c in CALLERS}
                    for _ in range(rounds):
                        local.append(worker.submit(in_process_rate, model, batch, images).result())
                        for callers in CALLERS:
                            served[callers].append(asyncio.run(served_rate(address, spec_name, callers, images)))
                    for callers in CALLERS:
                        ratio = statistics.median(s / r for s, r in zip(served[callers], local, strict=True))
                        rows.append(
                            (batch, callers, statistics.median(served[callers]), statistics.median(local), ratio)
                        )
            worker.submit(model.unload).result()
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            described = ", ".join(f"{k}={v}" for k, v in settings.items())
            print(f"### {family} ({described}), median of {rounds} rounds; load average after: {load}\n")
            print("| max_batch_size | callers | served img/s | in-process img/s (same batch) | ratio |")
            print("|---:|---:|---:|---:|---:|")
            for batch, callers, rate, ref, ratio in rows:
                print(f"| {batch} | {callers} | {rate:.2f} | {ref:.2f} | {ratio:.2f} |")
            print(flush=True)


if __name__ == "__main__":
    main()

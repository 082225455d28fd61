"""Text generation: gRPC streaming vs in-process, and continuous batching throughput.

The model is a GPT-2 with random weights, saved as a Hugging Face folder and loaded by the
text plugin through from_pretrained, like a downloaded one; its shape is picked with
``--shape`` (default ``distilgpt2``: 6 layers, 768 wide, 12 heads, 50257-token vocabulary,
82M parameters). The tokenizer is a small byte-level BPE built on the spot (tokens it does
not know decode to nothing, which changes no timing that matters here).

Measured:

1. Latency of one stream, greedy, ``--tokens`` new tokens after a short prompt (median of
   ``--repeats`` runs):
   * in-process ``model.generate``: time to first token = ``generate(max_new_tokens=1)``,
     per-token = ``(generate(N) - generate(1)) / (N - 1)``;
   * in-process, the plugin's own decode loop (``HFTextGenerator.start/step``), no server;
   * over gRPC to a server in its own process (``modelplex.server.cli``), sync client:
     time to first token = from the call to the first chunk, per-token = the mean gap
     between chunks after the first.
2. Aggregate tokens/s with 1, 4 and 16 concurrent streams on one instance (AsyncClient,
   different prompts, ``--tokens`` each), as a ratio to one stream; with continuous
   batching (``max_batch_size = 16``) and, for contrast, without (``max_batch_size = 1``:
   the streams take turns, one token each per step).

Client and server share this machine's cores.

    python benchmarks/bench_textgen.py                  # ~2 min on 2 CPU cores
    python benchmarks/bench_textgen.py --shape tiny     # seconds; checks the plumbing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=2, vocab_size=400),
    "distilgpt2": dict(n_layer=6, n_embd=768, n_head=12, vocab_size=50257),
    "gpt2": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257),
}
PROMPTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "streaming tokens over grpc",
    "translate English to German: the house is wonderful",
]


def build_model(folder: Path, shape: str) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from text_models import tokenizer

    tok = tokenizer()
    tok.bos_token = tok.eos_token
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(n_positions=1024, bos_token_id=eos, eos_token_id=eos, **SHAPES[shape])
    torch.manual_seed(0)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# -- how busy the machine was ---------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _TICK


def _our_seconds() -> float:
    """CPU seconds of this process and its finished children (the servers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Noise:
    """Cores used by other processes while the benchmark ran: on 2 cores any of it shows."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.ours0 = time.monotonic(), _busy_seconds(), _our_seconds()

    def other_cores(self) -> float:
        wall = time.monotonic() - self.t0
        return max(0.0, (_busy_seconds() - self.busy0) - (_our_seconds() - self.ours0)) / wall


# -- in-process ---------------------------------------------------------------------------------


def in_process(folder: Path, tokens: int, repeats: int) -> dict[str, dict[str, float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([AutoTokenizer.from_pretrained(folder)(PROMPTS[0])["input_ids"]])

    def generate(n: int) -> float:
        t0 = time.perf_counter()
        model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )
        return time.perf_counter() - t0

    generate(4)
    first = statistics.median(generate(1) for _ in range(repeats))
    full = statistics.median(generate(tokens) for _ in range(repeats))
    out = {"generate": {"ttft_ms": first * 1e3, "per_token_ms": (full - first) / (tokens - 1) * 1e3}}

    from modelplex import LoadContext, SamplingParams, WeightsChoice
    from modelplex_text.generator import HFTextGenerator
    from modelplex_text.plugin import FAMILIES, build_specs
    from modelplex_text.settings import TextSettings

    spec = {s.name: s for s in build_specs()}["causal-lm"]
    family = {f.name: f for f in FAMILIES}["causal-lm"]
    ctx = LoadContext("bench", spec, spec.variant(None), WeightsChoice.parse(str(folder)), "cpu", TextSettings())
    g = HFTextGenerator(family, ctx)
    g.load()

    def loop() -> tuple[float, float]:
        t0 = time.perf_counter()
        seq = g.start(g.tokenize(PROMPTS[0]), SamplingParams())
        g.step([seq])
        t1 = time.perf_counter()
        for _ in range(tokens - 1):
            g.step([seq])
        t2 = time.perf_counter()
        g.release(seq)
        return t1 - t0, (t2 - t1) / (tokens - 1)

    loop()
    runs = [loop() for _ in range(repeats)]
    out["plugin decode loop"] = {
        "ttft_ms": statistics.median(r[0] for r in runs) * 1e3,
        "per_token_ms": statistics.median(r[1] for r in runs) * 1e3,
    }
    return out


# -- over gRPC ----------------------------------------------------------------------------------


class Server:
    """``python -m modelplex.server.cli`` serving the model, in its own process."""

    def __init__(self, workdir: Path, folder: Path, max_batch_size: int) -> None:
        config = workdir / f"textgen-{max_batch_size}.toml"
        config.write_text(
            '[server]\nlog_level = "warning"\n[[models]]\nspec = "causal-lm"\nname = "bench"\n'
            f'weights = "{folder}"\ndevices = ["cpu"]\n'
            f"settings = {{ max_batch_size = {max_batch_size}, max_new_tokens = 1000 }}\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelplex.server.cli", "--config", str(config), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=(workdir / f"server-{max_batch_size}.log").open("w"),
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        match = re.search(r"serving on ([\d.]+:\d+)", line)
        if not match:
            self.proc.kill()
            raise SystemExit(f"the server did not start: {line!r}; see {workdir}/server-{max_batch_size}.log")
        self.address = match.group(1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def grpc_latency(address: str, tokens: int, repeats: int) -> dict[str, float]:
    from modelplex_client import Client

    def one() -> tuple[float, float, int]:
        stamps = []
        t0 = time.perf_counter()
        chunks = []
        for chunk in client.generate(PROMPTS[0], model="bench", max_new_tokens=tokens):
            stamps.append(time.perf_counter())
            chunks.append(chunk)
        n = chunks[-1].usage.completion_tokens
        return stamps[0] - t0, (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1), n

    with Client(address, timeout=600) as client:
        one()
        runs = [one() for _ in range(repeats)]
    return {
        "ttft_ms": statistics.median(r[0] for r in runs) * 1e3,
        "per_token_ms": statistics.median(r[1] for r in runs) * 1e3,
    }


async def aggregate(address: str, streams: int, tokens: int) -> dict[str, float]:
    """Tokens per second over ``streams`` concurrent streams of ``tokens`` tokens each, and the
    streams' median time to first token."""
    from modelplex_client import AsyncClient

    async with AsyncClient(address, timeout=600) as client:

        async def one(i: int) -> tuple[int, float]:
            n, first, t0 = 0, 0.0, time.perf_counter()
            prompt = PROMPTS[i % len(PROMPTS)] + f" {i}"
            async for chunk in client.generate(prompt, model="bench", max_new_tokens=tokens):
                first = first or time.perf_counter() - t0
                n += len(chunk.token_ids)
            return n, first

        await one(0)  # warm
        t0 = time.perf_counter()
        runs = await asyncio.gather(*(one(i) for i in range(streams)))
        wall = time.perf_counter() - t0
        return {
            "tokens_per_s": sum(r[0] for r in runs) / wall,
            "median_ttft_ms": statistics.median(r[1] for r in runs) * 1e3,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="distilgpt2")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per stream")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    results: dict[str, object] = {
        "shape": args.shape,
        "tokens": args.tokens,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
    }
    noise = Noise()
    with tempfile.TemporaryDirectory(prefix="bench-textgen-") as tmp:
        workdir = Path(tmp)
        folder = build_model(workdir / "model", args.shape)
        latency = in_process(folder, args.tokens, args.repeats)
        throughput: dict[str, dict[int, dict[str, float]]] = {}
        for batch in (16, 1):
            server = Server(workdir, folder, batch)
            try:
                if batch == 16:
                    latency["gRPC stream (sync client)"] = grpc_latency(server.address, args.tokens, args.repeats)
                throughput[f"max_batch_size={batch}"] = {
                    n: asyncio.run(aggregate(server.address, n, args.tokens)) for n in args.streams
                }
            finally:
                server.close()
    results["other_processes_cores"] = noise.other_cores()
    results["latency"] = latency
    results["throughput"] = throughput

    print(f"\nGPT-2 shape {args.shape!r}, random weights, CPU ({os.cpu_count()} cores), {args.tokens} new tokens\n")
    print("| path | time to first token (ms) | per token (ms) |\n|---|---:|---:|")
    for name, row in latency.items():
        print(f"| {name} | {row['ttft_ms']:.1f} | {row['per_token_ms']:.2f} |")
    print(
        "\n| concurrent streams | " + " | ".join(f"{k}: tok/s (x one stream), median TTFT" for k in throughput) + " |"
    )
    print("|---:|" + "---:|" * len(throughput))
    for n in args.streams:
        cells = []
        for rows in throughput.values():
            rate, base = rows[n]["tokens_per_s"], rows[args.streams[0]]["tokens_per_s"]
            cells.append(f"{rate:.0f} ({rate / base:.2f}x), {rows[n]['median_ttft_ms']:.0f} ms")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(f"\nOther processes used {results['other_processes_cores']:.2f} cores on average while this ran", end="")
    print(" (over 0.1: the numbers are disturbed; rerun on a quiet machine)." if noise.other_cores() > 0.1 else ".")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

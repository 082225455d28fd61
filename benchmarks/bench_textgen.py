"""Text generation: gRPC streaming vs in-process, and continuous batching throughput.

The model is a GPT-2 with random weights, saved as a Hugging Face folder and loaded by the
text plugin (spec ``causal-lm``) through from_pretrained, like a downloaded one; its shape is
picked with ``--shape`` (default ``distilgpt2``: 6 layers, 768 wide, 12 heads, 50257-token
vocabulary, 82M parameters). The tokenizer is a small byte-level BPE built on the spot
(tokens it does not know decode to nothing, which changes no timing that matters here).

Measured, greedy, ``--tokens`` new tokens after a short prompt:

1. Latency of one stream (median of ``--repeats`` runs):
   * in-process ``model.generate``: time to first token = ``generate(max_new_tokens=1)``,
     per token = ``(generate(N) - generate(1)) / (N - 1)``;
   * in-process, the plugin's own decode loop (``start``/``step``), no server;
   * over gRPC to a server in its own process, sync ``Client.generate``: time to first
     token = from the call to the first chunk, per token = the mean gap between chunks.
2. Aggregate tokens/s with 1, 4 and 16 concurrent streams on one instance (AsyncClient,
   different prompts), with continuous batching (``max_batch_size = 16``) and, for contrast,
   without (``max_batch_size = 1``: the streams take turns).

With ``--compare-tree DIR`` (a checkout of another commit: ``git worktree add /tmp/prev
641f188``) that checkout's servers run beside this one's; each of ``--rounds`` rounds takes
each measure (latency, then each stream count) on every server in turn, and the report adds
the two side by side with per-round ratios.

    python benchmarks/bench_textgen.py                  # ~2 min on 2 CPU cores
    python benchmarks/bench_textgen.py --quick          # the tiny shape: seconds, checks the plumbing
    python benchmarks/bench_textgen.py --compare-tree /tmp/prev --batch-sizes 16 --rounds 3 --wait-quiet 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

sys.path.insert(0, str(c.ROOT / "tests"))
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


def entry(folder: Path, batch: int, tree: c.Tree) -> dict[str, Any]:
    limits = {"max_batch_size": batch, "max_new_tokens": 1000}
    model = {"spec": "causal-lm", "name": "bench", "weights": str(folder), "devices": ["cpu"]}
    # Before the task units the limits were keys of the settings table; now they are the entry's.
    return model | ({"settings": limits} if tree.legacy else limits)


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


def in_process(folder: Path, tokens: int, repeats: int) -> dict[str, dict[str, float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelplex import SamplingParams

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([AutoTokenizer.from_pretrained(folder)(PROMPTS[0])["input_ids"]])

    def generate(n: int) -> float:
        t0 = time.perf_counter()
        mask = torch.ones_like(ids)
        model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        return time.perf_counter() - t0

    generate(4)
    first = statistics.median(generate(1) for _ in range(repeats))
    full = statistics.median(generate(tokens) for _ in range(repeats))
    out = {"in-process model.generate": {"ttft_ms": first * 1e3, "per_token_ms": (full - first) / (tokens - 1) * 1e3}}

    g = c.build_in_process(entry(folder, 16, c.Tree(c.ROOT)))

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
    out["in-process, the plugin's decode loop"] = {
        "ttft_ms": statistics.median(r[0] for r in runs) * 1e3,
        "per_token_ms": statistics.median(r[1] for r in runs) * 1e3,
    }
    return out


def grpc_latency(address: str, tokens: int, repeats: int) -> dict[str, float]:
    from modelplex_client import Client

    def one() -> tuple[float, float]:
        stamps = []
        t0 = time.perf_counter()
        for _ in client.generate(PROMPTS[0], model="bench", max_new_tokens=tokens):
            stamps.append(time.perf_counter())
        return stamps[0] - t0, (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)

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


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="distilgpt2")
    p.add_argument("--quick", action="store_true", help="--shape tiny --repeats 2")
    p.add_argument("--tokens", type=int, default=64, help="new tokens per stream")
    p.add_argument("--repeats", type=int, default=5, help="single-stream runs per latency measure")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 1], help="one server each; latency on the first")
    p.add_argument("--rounds", type=int, default=1, help="rounds over every server (alternating the trees)")
    c.add_run_arguments(p, compare=True)
    args = p.parse_args()
    if args.quick:
        args.shape, args.repeats = "tiny", min(args.repeats, 2)
    return args


def main() -> int:
    args = parse_args()
    import torch

    trees = c.trees(args)
    monitor = c.NoiseMonitor(max_wait=args.wait_quiet)
    with c.workdir() as wd, contextlib.ExitStack() as stack:
        folder = build_model(wd / "model", args.shape)
        servers = {
            (t.label, b): stack.enter_context(
                c.modelplex_server(wd, c.config_toml(entry(folder, b, t)), tree=t, name=f"server{i}-b{b}")
            )
            for i, t in enumerate(trees)
            for b in args.batch_sizes
        }
        monitor.start(*servers.values())
        latency = monitor.guard(lambda: in_process(folder, args.tokens, args.repeats))
        # Each round takes each measure on every server in turn (the order reversed every other round).
        rounds: dict[tuple[str, int], list[dict[str, Any]]] = {k: [] for k in servers}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
            for result in rounds.values():
                result.append({"streams": {}})
            for measure in ["latency", *args.streams]:
                for (label, b), srv in c.alternate(list(servers.items()), r):
                    this = rounds[label, b][r]
                    if measure == "latency" and b == args.batch_sizes[0]:
                        this["latency"] = monitor.guard(
                            lambda a=srv.address: grpc_latency(a, args.tokens, args.repeats)
                        )
                    elif measure != "latency":
                        this["streams"][measure] = monitor.guard(
                            lambda a=srv.address, n=measure: asyncio.run(aggregate(a, n, args.tokens))
                        )
        noise = monitor.sample()

    report = build_report(latency, rounds, trees, args, noise, torch.get_num_threads())
    c.finish(
        "textgen",
        args,
        report,
        {
            "machine": c.machine_info(trees, torch.get_num_threads()),
            "imports": {s.name: s.imports for s in servers.values()},
            "in_process": latency,
            "rounds": {f"{label} max_batch_size={b}": rs for (label, b), rs in rounds.items()},
            "noise": noise,
        },
    )
    return 0


def build_report(latency, rounds, trees, args, noise, threads) -> str:
    first = args.batch_sizes[0]
    med = statistics.median
    rows = [[name, r["ttft_ms"], r["per_token_ms"]] for name, r in latency.items()]
    for t in trees:
        runs = [x["latency"] for x in rounds[t.label, first]]
        rows.append(
            [
                f"{t.label} over gRPC, Client.generate",
                med(r["ttft_ms"] for r in runs),
                med(r["per_token_ms"] for r in runs),
            ]
        )
    lines = [
        c.noise_line(noise),
        "",
        f"### GPT-2 shape {args.shape!r}, random weights, CPU ({os.cpu_count()} cores, torch threads {threads}), "
        f"{args.tokens} new tokens; gRPC figures are medians over {args.rounds} round(s)",
        "",
        c.table(["path", "time to first token ms", "per token ms"], rows),
        "",
    ]

    def tps(label: str, b: int, n: int) -> list[float]:
        return [x["streams"][n]["tokens_per_s"] for x in rounds[label, b]]

    keys = list(rounds)
    headers = [f"{label}, max_batch_size {b}: tok/s (x one stream), median TTFT" for label, b in keys]
    rows = []
    for n in args.streams:
        cells = []
        for label, b in keys:
            rate, base = med(tps(label, b, n)), med(tps(label, b, args.streams[0]))
            ttft = med(x["streams"][n]["median_ttft_ms"] for x in rounds[label, b])
            cells.append(f"{rate:.0f} ({rate / base:.2f}x), {ttft:.0f} ms")
        rows.append([str(n), *cells])
    lines.append(c.table(["concurrent streams", *headers], rows))
    if len(trees) == 2:
        a, b = (t.label for t in trees)
        metrics = {
            "TTFT ms, one stream": tuple([x["latency"]["ttft_ms"] for x in rounds[k, first]] for k in (a, b)),
            "per token ms, one stream": tuple([x["latency"]["per_token_ms"] for x in rounds[k, first]] for k in (a, b)),
        }
        for n in args.streams:
            metrics[f"tokens/s, {n} stream(s), max_batch_size {first}"] = (tps(a, first, n), tps(b, first, n))
        lines += ["", f"### {a} vs {b}, measured one after the other in each round", ""]
        lines.append(c.comparison([a, b], metrics))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Text generation under load: continuous batching against the in-process model, chunked
prefill, prefix caching.

The model is a distilgpt2-shaped GPT-2 (6 layers, 768 wide, 50257-token vocabulary) with random
weights and a 2304-token window, saved as a Hugging Face folder and loaded by the text plugin
(spec ``causal-lm``) in a server process; prompts are given as token ids (exact lengths), all
greedy with ``ignore_eos`` (every stream makes all its tokens). Measured in one run:

1. tokens/s with 1, 4 and 16 streams started together (64 tokens each, 16-token prompts)
   against in-process ``model.generate`` on the same prompts as one batch; and the 16-stream
   rate over the 1-stream rate;
2. time to first token under load: 4 and 16 clients each sending 3 requests back to back
   (so requests join running batches), median over all requests;
3. chunked prefill: 15 streams running, a 2,000-token prompt joins; the longest gap between
   two tokens of a running stream while it is prefilled, with ``prefill_chunk_tokens`` 256 and
   without chunks (one model each), against the in-process time of one 256-token chunk;
4. prefix caching: 6 requests sharing a 512-token beginning, one after the other: median time
   to first token of the last 5, with ``prefix_cache_tokens`` on and off;
5. the same join in-process, in CPU time (one torch thread, ``time.thread_time``, so that other
   processes on the machine do not move it): each step's cost while the 2,000-token prompt is
   prefilled in 256-token chunks and after it joins, against a step of the 15 alone.

    python benchmarks/bench_textgen_load.py            # a few minutes on 2 CPU cores
    python benchmarks/bench_textgen_load.py --parts join join-cpu   # only the chunked-prefill parts
    python benchmarks/bench_textgen_load.py --quick    # a tiny model: seconds, checks the plumbing
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

sys.path.insert(0, str(c.ROOT / "tests"))

SHAPES = {
    "distilgpt2": dict(n_layer=6, n_embd=768, n_head=12, vocab_size=50257),
    "tiny": dict(n_layer=2, n_embd=64, n_head=2, vocab_size=400),
}
WINDOW = 2304
NEW = 64


def build(folder: Path, shape: str) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from text_models import tokenizer

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_positions=WINDOW, **SHAPES[shape])).eval().save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def prompt(i: int, n: int, vocab: int) -> list[int]:
    """A distinct prompt of ``n`` token ids."""
    return [(i * 7919 + j * 104729) % (vocab - 1) + 1 for j in range(n)]


async def stream(client: Any, model: str, ids: list[int], n: int, times: list[float] | None = None) -> list[float]:
    """The arrival times of a stream's tokens (into ``times`` as they come)."""
    times = [] if times is None else times
    async for chunk in client.generate(ids, model=model, max_new_tokens=n, ignore_eos=True):
        times += [time.perf_counter()] * len(chunk.token_ids)
    return times


async def throughput(address: str, streams: int, vocab: int) -> float:
    from modelplex_client import AsyncClient

    async with AsyncClient(address, timeout=600) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(stream(client, "lm", prompt(i, 16, vocab), NEW) for i in range(streams)))
        return streams * NEW / (time.perf_counter() - t0)


def in_process(model: Any, streams: int, vocab: int) -> float:
    import torch

    ids = torch.tensor([prompt(i, 16, vocab) for i in range(streams)])
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False
        )
    return streams * NEW / (time.perf_counter() - t0)


def throughput_section(address: str, model: Any, vocab: int, rounds: int, payload: dict[str, Any]) -> list[str]:
    """Tokens/s at 1, 4 and 16 streams against in-process ``generate``, in alternating rounds."""
    rates: dict[int, list[tuple[float, float]]] = {}
    for r in range(rounds):
        for n in c.alternate([1, 4, 16], r):
            rates.setdefault(n, []).append((asyncio.run(throughput(address, n, vocab)), in_process(model, n, vocab)))
    rows = []
    for n, pairs in rates.items():
        served, local = (statistics.median(x) for x in zip(*pairs, strict=True))
        rows.append([f"{n} stream(s)", served, local, f"{served / local:.2f}"])
    scale = statistics.median(a for a, _ in rates[16]) / statistics.median(a for a, _ in rates[1])
    local_scale = statistics.median(b for _, b in rates[16]) / statistics.median(b for _, b in rates[1])
    payload.update(rates=rates, scale=scale, local_scale=local_scale)
    return [
        c.table(["streams", "modelplex tokens/s", "in-process tokens/s", "ratio"], rows),
        f"16 streams / 1 stream tokens/s: {scale:.1f}x (in-process `generate`: {local_scale:.1f}x)",
    ]


async def ttft_under_load(address: str, clients: int, vocab: int) -> float:
    from modelplex_client import AsyncClient

    firsts: list[float] = []
    async with AsyncClient(address, timeout=600) as client:

        async def one(i: int) -> None:
            for k in range(3):
                t0 = time.perf_counter()
                times = await stream(client, "lm", prompt(100 * i + k, 16, vocab), NEW)
                firsts.append(times[0] - t0)

        await asyncio.gather(*(one(i) for i in range(clients)))
    return statistics.median(firsts) * 1000


async def join_long(address: str, model: str, vocab: int, long: int) -> tuple[float, float, float]:
    """(longest gap, median gap) between tokens of 15 running streams while a ``long``-token
    prompt joins, and that prompt's time to first token; in ms."""
    from modelplex_client import AsyncClient

    async with AsyncClient(address, timeout=600) as client:
        seen: list[list[float]] = [[] for _ in range(15)]
        running = [asyncio.create_task(stream(client, model, prompt(i, 16, vocab), 160, seen[i])) for i in range(15)]
        while min(len(s) for s in seen) < 8:  # every stream decoding in the batch
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        (first,) = await stream(client, model, prompt(999, long, vocab), 1)
        times = await asyncio.gather(*running)
    gaps = [b - a for ts in times for a, b in zip(ts, ts[1:], strict=False) if t0 <= b and a <= first]
    every = [b - a for ts in times for a, b in zip(ts, ts[1:], strict=False)]
    return max(gaps, default=0) * 1000, statistics.median(every) * 1000, (first - t0) * 1000


def chunk_ms(model: Any, long: int, chunk: int) -> float:
    """In-process: the last ``chunk`` tokens of a ``long``-token prompt, after the rest is cached."""
    import torch

    ids = torch.tensor([prompt(999, long, model.config.vocab_size)])
    with torch.inference_mode():
        cache = model(ids[:, : long - chunk], use_cache=True).cache
        t0 = time.perf_counter()
        model(ids[:, long - chunk :], cache=cache, use_cache=True, logits_to_keep=1)
    return (time.perf_counter() - t0) * 1000


def join_cpu_ms(folder: Path, long: int, chunk: int) -> dict[str, list[float]]:
    """CPU ms of each engine step (one torch thread, in this process): 15 sequences decoding alone
    (``alone``), while a ``long``-token prompt is prefilled in ``chunk``-token chunks (``prefill``,
    the last being the step where it joins) and after it joined (``after``); and the cost of one
    ``chunk`` over the prompt's first ``long - chunk`` tokens, alone (``chunk``)."""
    import torch

    from modelplex import SamplingParams

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = c.build_in_process(
            dict(
                name="lm",
                spec="causal-lm",
                weights=str(folder),
                devices=["cpu"],
                max_batch_size=16,
                max_new_tokens=256,
                settings={"prefill_chunk_tokens": chunk},
            )
        )
        vocab = gen.vocab_size
        out: dict[str, list[float]] = {"alone": [], "prefill": [], "after": []}

        def timed(seqs: list[Any]) -> tuple[float, list[Any]]:
            t0 = time.thread_time()
            tokens = gen.step(seqs)
            return (time.thread_time() - t0) * 1000, tokens

        seqs = [gen.start(prompt(i, 16, vocab), SamplingParams(ignore_eos=True)) for i in range(15)]
        for k in range(8):
            ms, _ = timed(seqs)
            if k >= 2:
                out["alone"].append(ms)
        joiner = gen.start(prompt(999, long, vocab), SamplingParams(ignore_eos=True))
        joined = False
        while not joined:
            ms, tokens = timed([*seqs, joiner])
            out["prefill"].append(ms)
            joined = tokens[-1] is not None
        for _ in range(6):
            out["after"].append(timed([*seqs, joiner])[0])
        for s in [*seqs, joiner]:
            gen.release(s)
        gen.step([])
        model = gen.model
        ids = torch.tensor([prompt(999, long, vocab)])
        with torch.inference_mode():
            cache = model(ids[:, : long - chunk], use_cache=True).cache
            t0 = time.thread_time()
            model(ids[:, long - chunk :], cache=cache, use_cache=True, logits_to_keep=1)
            out["chunk"] = [(time.thread_time() - t0) * 1000]
        gen.unload()
        return out
    finally:
        torch.set_num_threads(threads)


async def prefix_ttft(address: str, model: str, vocab: int) -> float:
    from modelplex_client import AsyncClient

    system = prompt(4242, 512, vocab)
    firsts = []
    async with AsyncClient(address, timeout=600) as client:
        for i in range(6):
            t0 = time.perf_counter()
            (first,) = await stream(client, model, system + prompt(i, 16, vocab), 1)
            firsts.append(first - t0)
    return statistics.median(firsts[1:]) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the tiny shape")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--long", type=int, default=2000, help="tokens of the joining prompt")
    parts = ("throughput", "ttft", "join", "prefix", "join-cpu")
    p.add_argument("--parts", nargs="+", choices=parts, default=list(parts), help="what to measure (default: all)")
    c.add_run_arguments(p)
    args = p.parse_args()
    shape = "tiny" if args.quick else "distilgpt2"
    vocab = SHAPES[shape]["vocab_size"]
    from transformers import AutoModelForCausalLM

    with c.workdir() as work:
        folder = build(work / "model", shape)
        entry = dict(spec="causal-lm", weights=str(folder), devices=["cpu"], max_batch_size=16, max_new_tokens=256)
        models = [
            dict(entry, name="lm", settings={"prefill_chunk_tokens": 256}),
            dict(entry, name="whole", settings={"prefill_chunk_tokens": 1_000_000}),
            dict(entry, name="prefix", settings={"prefix_cache_tokens": 8192}),
        ]
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        payload: dict[str, Any] = {"machine": c.machine_info([c.Tree(c.ROOT)]), "shape": shape}
        sections = [f"## Text generation under load ({shape}, greedy, {NEW} tokens, {args.rounds} rounds)"]
        with c.modelplex_server(work, c.config_toml(*models)) as server:
            run = asyncio.run
            run(throughput(server.address, 1, vocab))  # warm up, both
            in_process(model, 1, vocab)
            if "throughput" in args.parts:
                sections += throughput_section(server.address, model, vocab, args.rounds, payload)
            if "ttft" in args.parts:
                ttft = payload["ttft"] = {n: run(ttft_under_load(server.address, n, vocab)) for n in (4, 16)}
                sections.append(
                    c.table(
                        ["clients (3 requests each)", "median time to first token, ms"],
                        [[n, v] for n, v in ttft.items()],
                    )
                )
            if "join" in args.parts:
                joins = payload["joins"] = {
                    m: run(join_long(server.address, m, vocab, args.long)) for m in ("lm", "whole")
                }
                one_chunk = payload["chunk_ms"] = chunk_ms(model, args.long, 256)
                rows = [
                    ["chunks of 256" if m == "lm" else "whole", v[0], v[1], v[0] - v[1], v[2]] for m, v in joins.items()
                ]
                head = [f"a {args.long}-token prompt joins 15 streams", "longest gap, ms", "median gap, ms"]
                head += ["delay (longest - median), ms", "its TTFT, ms"]
                sections.append(c.table(head, rows) + f"\n\none 256-token chunk in-process: {one_chunk:.0f} ms")
            if "prefix" in args.parts:
                prefix = payload["prefix"] = {m: run(prefix_ttft(server.address, m, vocab)) for m in ("prefix", "lm")}
                sections.append(
                    c.table(
                        ["512-token shared beginning", "median time to first token, ms"],
                        [["prefix cache on" if m == "prefix" else "off", v] for m, v in prefix.items()],
                    )
                )
        if "join-cpu" in args.parts:
            cpu = payload["join_cpu_ms"] = join_cpu_ms(folder, args.long, 256)
            alone = statistics.median(cpu["alone"])
            worst = max(cpu["prefill"])
            sections.append(
                c.table(
                    ["in-process, CPU ms per step (1 thread)", "value"],
                    [
                        ["15 streams alone (median)", alone],
                        ["while the prompt is prefilled: each step", " / ".join(f"{x:.0f}" for x in cpu["prefill"])],
                        ["after it joined: each step", " / ".join(f"{x:.0f}" for x in cpu["after"])],
                        ["one 256-token chunk (the last) alone", cpu["chunk"][0]],
                        ["worst step's delay (worst - alone) ÷ one chunk", f"{(worst - alone) / cpu['chunk'][0]:.2f}"],
                    ],
                )
            )
        report = "\n\n".join(sections)
        c.finish("textgen_load", args, report, payload)


if __name__ == "__main__":
    main()

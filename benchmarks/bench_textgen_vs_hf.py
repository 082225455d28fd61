"""modelplex against Hugging Face's own ``transformers serve --continuous-batching``, in one run.

The model is a distilgpt2-shaped GPT-2 (6 layers, 768 wide, 50257-token vocabulary, 2304-token
window) with random weights, saved once as a Hugging Face folder that both servers load. Its
tokenizer is a word-level one over the whole vocabulary (``w0`` .. ``w50255`` and
``<|endoftext|>``), so that every generated token has text for both servers to stream and a
prompt of 16 words is 16 tokens. Both servers run in their own processes on this machine's
cores (torch's default threads), the clients in this one:

* ``transformers serve --continuous-batching --device cpu FOLDER`` (its paged-cache
  ``ContinuousBatchingManager``; the cache set to 8,192 tokens: its default takes a share of
  the machine's memory, 13 GB here), driven through its OpenAI-compatible ``/v1/completions``,
  streamed (server-sent events), with the ``openai`` SDK;
* modelplex (the text plugin's ``causal-lm``, ``max_batch_size = 16``): its gRPC ``Generate``
  stream (``AsyncClient.generate``), and its own OpenAI door (``/v1/completions``, streamed,
  the same SDK calls as for Hugging Face's);
* in-process ``model.generate`` on the same prompts as one batch: the floor; and the same on a
  copy of the model whose linear layers are packed for oneDNN, as the server's are on a CPU
  (``cpu_prepack``): the floor for the same arithmetic.

Greedy, 64 new tokens, N = 1, 4 and 16 streams started together; per configuration and round:
tokens/s (N x 64 over the wall time of the N streams) and the median time to first token (the
first chunk with text). Rounds alternate the order of the configurations. Every stream's token
count is checked: Hugging Face's server cannot be told to ignore the end token (modelplex is
given ``ignore_eos``), so the report says how many of its streams ended early (none with this
model and these prompts in the runs so far).

    python benchmarks/bench_textgen_vs_hf.py              # ~10 minutes on 2 CPU cores
    python benchmarks/bench_textgen_vs_hf.py --quick      # a tiny model, one round: the plumbing
    python benchmarks/bench_textgen_vs_hf.py --device cuda:0 --streams 1 4 16 64   # on a GPU

Needs ``transformers[serving]`` (FastAPI, uvicorn; the ``transformers`` CLI) and ``openai``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common as c

SHAPES = {
    "distilgpt2": dict(n_layer=6, n_embd=768, n_head=12, vocab_size=50257),
    "tiny": dict(n_layer=2, n_embd=64, n_head=2, vocab_size=400),
}
WINDOW = 2304
NEW = 64
STREAMS = (1, 4, 16)
PROMPT_TOKENS = 16
IN_PROCESS = ("in-process generate", "in-process generate, packed linears")
"""``model.generate`` as transformers ships it, and on the same model with its linear layers
packed for oneDNN (``modelplex.kit.prepack_linears``, what the text plugin does on a CPU)."""


def build(folder: Path, shape: str) -> Path:
    """The random model and its word-level tokenizer, saved as a Hugging Face folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = SHAPES[shape]["vocab_size"]
    words = {f"w{i}": i for i in range(vocab - 1)} | {"<|endoftext|>": vocab - 1}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    end = "<|endoftext|>"
    PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=end, bos_token=end, model_max_length=WINDOW
    ).save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(n_positions=WINDOW, bos_token_id=vocab - 1, eos_token_id=vocab - 1, **SHAPES[shape])
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    return folder


def prompt(i: int, vocab: int) -> str:
    """A distinct prompt of PROMPT_TOKENS words (tokens)."""
    return " ".join(f"w{(i * 7919 + j * 104729) % (vocab - 2) + 1}" for j in range(PROMPT_TOKENS))


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this run (the two servers each get one
    before either binds it: the OS may offer a closed port again)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def hf_server(work: Path, folder: Path, device: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``transformers serve --continuous-batching`` on ``folder``, offline, in its own process;
    yields its base URL."""
    port = free_port()
    log = work / "transformers-serve.log"
    cli = Path(c.PY).parent / "transformers"
    argv = [str(cli), "serve", "--continuous-batching", "--device", device, "--host", "127.0.0.1"]
    # Its default sizes the paged KV cache from the machine's memory: it took 13 GB of this
    # 23 GB machine and growing; 256 blocks of 32 tokens (8,192 tokens, 150 MB for this model)
    # hold 16 streams' 80 tokens many times over.
    argv += ["--cb-block-size", "32", "--cb-num-blocks", "256"]
    argv += ["--port", str(port), "--log-level", "warning", str(folder)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", proc, log)
            yield f"http://127.0.0.1:{port}/v1", proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


Stream = tuple[float, float, int, str]
"""(time to first token, time to the end, tokens, text) of one stream, in seconds from its start."""


async def openai_stream(client: Any, model: str, text: str, n: int, *, ignore_eos: bool) -> Stream:
    # Hugging Face's server takes neither vLLM's ignore_eos nor stream_options (it always sends usage).
    extra = {"ignore_eos": True, "stream_options": {"include_usage": True}} if ignore_eos else None
    t0 = time.perf_counter()
    first, parts, usage = 0.0, [], None
    response = await client.completions.create(
        model=model, prompt=text, max_tokens=n, temperature=0, stream=True, extra_body=extra
    )
    async for chunk in response:
        if chunk.choices and chunk.choices[0].text:
            first = first or time.perf_counter() - t0
            parts.append(chunk.choices[0].text)
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    out = "".join(parts)
    return first, time.perf_counter() - t0, usage if usage is not None else len(out.split()), out


async def grpc_stream(client: Any, text: str, n: int) -> Stream:
    t0 = time.perf_counter()
    first, tokens, parts = 0.0, 0, []
    async for chunk in client.generate(text, model="lm", max_new_tokens=n, ignore_eos=True):
        if chunk.text:
            first = first or time.perf_counter() - t0
            parts.append(chunk.text)
        tokens += len(chunk.token_ids)
    return first, time.perf_counter() - t0, tokens, "".join(parts)


async def together(make: Any, n: int, vocab: int, offset: int) -> tuple[float, float, list[int]]:
    """``n`` streams started together: (tokens/s, median TTFT in s, each stream's tokens)."""
    t0 = time.perf_counter()
    results = await asyncio.gather(*(make(prompt(offset + i, vocab)) for i in range(n)))
    wall = time.perf_counter() - t0
    return sum(r[2] for r in results) / wall, statistics.median(r[0] for r in results), [r[2] for r in results]


def in_process(model: Any, tokenizer: Any, n: int, vocab: int, offset: int) -> tuple[float, float, list[int]]:
    """``model.generate`` on the ``n`` prompts as one batch: (tokens/s, time to the first token
    (a 1-token generate of the batch), tokens per row)."""
    import torch

    ids = torch.tensor([tokenizer(prompt(offset + i, vocab))["input_ids"] for i in range(n)]).to(model.device)
    kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=vocab - 1)
    with torch.inference_mode():
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, **kwargs).cpu()  # .cpu(): waits for the device
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, **kwargs).cpu()
        wall = time.perf_counter() - t0
    return n * NEW / wall, first, [out.shape[1] - ids.shape[1]] * n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a tiny model and one round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", help="where both servers and the in-process model run (cpu, cuda:0)")
    p.add_argument("--streams", type=int, nargs="+", default=list(STREAMS), help="streams started together")
    c.add_run_arguments(p)
    args = p.parse_args()
    streams = sorted(set(args.streams) | {1})
    shape = "tiny" if args.quick else "distilgpt2"
    rounds = 1 if args.quick else args.rounds
    vocab = SHAPES[shape]["vocab_size"]

    from openai import AsyncOpenAI
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelplex.kit import prepack_linears
    from modelplex_client import AsyncClient

    with c.workdir() as work:
        folder = build(work / "model", shape)
        door = free_port()
        entry = dict(name="lm", spec="causal-lm", weights=str(folder), devices=[args.device])
        entry["max_batch_size"] = max(streams)
        toml = c.config_toml(dict(entry, max_new_tokens=256)) + f"\n[server.front_doors]\nopenai = {door}\n"
        model = AutoModelForCausalLM.from_pretrained(folder).eval().to(args.device)
        # The same math as the server's on a CPU: its linear layers packed for oneDNN (cpu_prepack).
        packed = AutoModelForCausalLM.from_pretrained(folder).eval().to(args.device)
        if not prepack_linears(packed, rows=max(streams)):
            packed = model
        tokenizer = AutoTokenizer.from_pretrained(folder)
        monitor = c.NoiseMonitor(args.wait_quiet)
        with hf_server(work, folder, args.device) as (hf_url, hf_proc), c.modelplex_server(work, toml) as server:
            wait_http(f"http://127.0.0.1:{door}/v1/models", server.proc, server.log_path)  # type: ignore[arg-type]
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)  # the gRPC aio client binds to the loop it is made on
            hf = AsyncOpenAI(base_url=hf_url, api_key="none", max_retries=0, timeout=600)
            mpx = AsyncOpenAI(base_url=f"http://127.0.0.1:{door}/v1", api_key="none", max_retries=0, timeout=600)
            grpc = AsyncClient(server.address, timeout=600)
            configs = {
                "transformers serve (HTTP)": lambda t: openai_stream(hf, str(folder), t, NEW, ignore_eos=False),
                "modelplex gRPC": lambda t: grpc_stream(grpc, t, NEW),
                "modelplex OpenAI door (HTTP)": lambda t: openai_stream(mpx, "lm", t, NEW, ignore_eos=True),
            }
            # Warm up: Hugging Face's first call sets its paged cache up (~20 s here). And a check
            # that the three give the same greedy text for the same prompt.
            t0 = time.perf_counter()
            for make in configs.values():
                loop.run_until_complete(together(make, 2, vocab, 10_000))
            setup = time.perf_counter() - t0
            texts = [loop.run_until_complete(make(prompt(0, vocab)))[3] for make in configs.values()]
            same = all(t == texts[0] for t in texts)
            in_process(model, tokenizer, 1, vocab, 10_000)
            in_process(packed, tokenizer, 1, vocab, 10_000)
            monitor.start(server, c.ServerProcess("hf", hf_proc, hf_url, work / "transformers-serve.log"))  # type: ignore[arg-type]
            results: dict[tuple[str, int], list[tuple[float, float, list[int]]]] = {}
            for r in range(rounds):

                def one_round(r: int = r) -> dict[tuple[str, int], tuple[float, float, list[int]]]:
                    out = {}
                    for n in c.alternate(streams, r):
                        for name in c.alternate([*configs, *IN_PROCESS], r):
                            offset = 1000 * r + 100 * n
                            if name in IN_PROCESS:
                                chosen = packed if name == IN_PROCESS[1] else model
                                out[name, n] = in_process(chosen, tokenizer, n, vocab, offset)
                            else:
                                out[name, n] = loop.run_until_complete(together(configs[name], n, vocab, offset))
                    return out

                for key, value in monitor.guard(one_round).items():
                    results.setdefault(key, []).append(value)
            noise = monitor.sample()
            for closing in (grpc.close(), hf.close(), mpx.close(), loop.shutdown_asyncgens()):
                loop.run_until_complete(closing)
            loop.close()

    names = [*configs, *IN_PROCESS]
    med = {
        key: (statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals))
        for key, vals in results.items()
    }
    short = {name: sum(t < NEW for n in streams for v in results[name, n] for t in v[2]) for name in names}
    rows = []
    for n in streams:
        hf_rate, hf_ttft = med["transformers serve (HTTP)", n]
        for name in names:
            rate, ttft = med[name, n]
            rows.append(
                [
                    n,
                    name,
                    rate,
                    ttft * 1000,
                    f"{rate / hf_rate:.2f}",
                    f"{ttft / hf_ttft:.2f}",
                    f"{rate / med[IN_PROCESS[0], n][0]:.2f}",
                    f"{rate / med[IN_PROCESS[1], n][0]:.2f}",
                ]
            )
    most = streams[-1]
    scale = {name: med[name, most][0] / med[name, 1][0] for name in names}
    report = "\n\n".join(
        [
            f"## modelplex against `transformers serve --continuous-batching` ({shape} on {args.device}, greedy, "
            f"{NEW} tokens, {rounds} round(s), medians)",
            c.table(
                [
                    "streams",
                    "server",
                    "tokens/s",
                    "median TTFT, ms",
                    "tokens/s ÷ HF serve",
                    "TTFT ÷ HF serve",
                    "tokens/s ÷ generate",
                    "tokens/s ÷ generate, packed",
                ],
                rows,
            ),
            f"{most} streams ÷ 1 stream, tokens/s: " + ", ".join(f"{k} {v:.1f}x" for k, v in scale.items()),
            "streams that ended before 64 tokens: " + ", ".join(f"{k} {v}" for k, v in short.items()),
            f"the three gave the same greedy text for one prompt: {'yes' if same else 'NO'}",
            f"warm-up (both servers, 2 streams each; Hugging Face's first call sets its cache up): {setup:.1f} s",
            c.noise_line(noise),
        ]
    )
    payload = {
        "machine": c.machine_info([c.Tree(c.ROOT)]),
        "shape": shape,
        "device": args.device,
        "results": {f"{k[0]} x{k[1]}": v for k, v in results.items()},
        "noise": noise,
        "same_text": same,
        "texts": texts,
    }
    c.finish("textgen_vs_hf", args, report, payload)


if __name__ == "__main__":
    main()

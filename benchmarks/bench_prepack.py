"""One decode step of a language model on the CPU, with PyTorch's default linear layers and with
them packed for oneDNN (``modelplex.kit.prepack_linears``, the text plugin's ``cpu_prepack``).

The model is a distilgpt2-shaped GPT-2 with random weights (6 layers, 768 wide, 50,257-token
vocabulary), run in this process on torch's default threads. Per batch size (rows) and
configuration: a 48-token prompt per row prefilled, then the median time of one more token for
every row (a forward pass over a 48-token cache and the argmax), over ``--steps`` steps;
rounds alternate the order of the configurations. Also the product that dominates a step, the
language-model head (rows x 768 times 768 x 50,257), alone. The report gives each time, the
packed ÷ plain ratio, and each configuration's step cost at N rows ÷ at 1 row (what bounds how
much continuous batching can gain: 16 rows at 2x one row's cost give 8x one stream's tokens/s).
Then one frame of a full-size Tacotron 2 decoder (torchaudio's, random weights: both LSTM cells,
the attention and the projections) for 1, 4 and 16 sentences at once, plain and packed; and
one pass of a base-size Wav2Vec 2.0 (torchaudio's) over 1 and 4 windows of 1.75 s.

    python benchmarks/bench_prepack.py            # ~1 minute on 2 CPU cores
    python benchmarks/bench_prepack.py --quick    # a tiny model: the plumbing
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import _common as c

SHAPES = {
    "distilgpt2": dict(n_layer=6, n_embd=768, n_head=12, vocab_size=50257),
    "tiny": dict(n_layer=2, n_embd=64, n_head=2, vocab_size=400),
}
ROWS = (1, 4, 16)
PROMPT = 48


def step_times(model: Any, rows: int, vocab: int, steps: int) -> list[float]:
    import torch

    g = torch.Generator().manual_seed(rows)
    ids = torch.randint(0, vocab, (rows, PROMPT), generator=g)
    times = []
    with torch.inference_mode():
        out = model(ids, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(steps):
            t0 = time.perf_counter()
            out = model(token, past_key_values=cache, use_cache=True)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            times.append(time.perf_counter() - t0)
    return times


def call_times(module: Any, x: Any, reps: int) -> list[float]:
    """``module(x)`` once to warm up, then ``reps`` timed calls."""
    import torch

    times = []
    with torch.inference_mode():
        module(x)
        for _ in range(reps):
            t0 = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t0)
    return times


def head_times(head: Any, rows: int, width: int, steps: int) -> list[float]:
    import torch

    return call_times(head, torch.randn(rows, width), steps)


def tacotron_frame_times(decoder: Any, rows: int, frames: int) -> list[float]:
    """One Tacotron 2 decoder frame (prenet, both LSTM cells, attention, projections: torchaudio's
    ``_Decoder.decode``) for ``rows`` sentences of 60 encoded symbols, ``frames`` times."""
    import torch

    g = torch.Generator().manual_seed(rows)
    memory = torch.randn(rows, 60, 512, generator=g)
    mask = torch.zeros(rows, 60, dtype=torch.bool)
    times = []
    with torch.inference_mode():
        state = list(decoder._initialize_decoder_states(memory))
        processed = state.pop()
        frame = decoder._get_go_frame(memory)
        for _ in range(frames):
            t0 = time.perf_counter()
            out = decoder.decode(decoder.prenet(frame), *state, memory, processed, mask)
            times.append(time.perf_counter() - t0)
            frame, state = out[0], list(out[2:])
    return times


def wav2vec2_times(model: Any, rows: int, reps: int) -> list[float]:
    """One pass of a Wav2Vec 2.0 CTC model over ``rows`` windows of 1.75 s (a streaming
    recognizer's default window with its context: 1,000 + 500 + 250 ms)."""
    import torch

    return call_times(model, torch.randn(rows, 28_000, generator=torch.Generator().manual_seed(rows)), reps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a tiny model, one round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20, help="timed decode steps per measurement")
    c.add_run_arguments(p)
    args = p.parse_args()
    shape = "tiny" if args.quick else "distilgpt2"
    rounds = 1 if args.quick else args.rounds

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from modelplex.kit import prepack_linears

    config = GPT2Config(n_positions=1024, **SHAPES[shape])
    torch.manual_seed(0)
    plain = GPT2LMHeadModel(config).eval()
    packed = GPT2LMHeadModel(config).eval()
    packed.load_state_dict(plain.state_dict())
    swapped = prepack_linears(packed, rows=max(ROWS))
    models = {"plain": plain, "packed": packed}
    vocab, width = config.vocab_size, config.n_embd
    from torchaudio.models import Tacotron2

    torch.manual_seed(0)
    size = {} if not args.quick else dict(decoder_rnn_dim=64, attention_rnn_dim=64, prenet_dim=32)
    decoders = {"plain": Tacotron2(n_symbol=148, **size).eval().decoder}
    decoders["packed"] = Tacotron2(n_symbol=148, **size).eval().decoder
    decoders["packed"].load_state_dict(decoders["plain"].state_dict())
    tacotron_swapped = prepack_linears(decoders["packed"], rows=max(ROWS))
    import torchaudio

    torch.manual_seed(0)
    params = dict(torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H._params)
    if args.quick:
        params["encoder_num_layers"] = 1
    recognizers = {"plain": torchaudio.models.wav2vec2_model(**params).eval()}
    recognizers["packed"] = torchaudio.models.wav2vec2_model(**params).eval()
    recognizers["packed"].load_state_dict(recognizers["plain"].state_dict())
    w2v_swapped = prepack_linears(recognizers["packed"], rows=1)

    monitor = c.NoiseMonitor(args.wait_quiet)
    monitor.start()
    steps: dict[tuple[str, int], list[float]] = {}
    heads: dict[tuple[str, int], list[float]] = {}
    frames: dict[tuple[str, int], list[float]] = {}
    passes: dict[tuple[str, int], list[float]] = {}
    for r in range(rounds):

        def one_round(r: int = r) -> dict[tuple[str, str, int], list[float]]:
            out = {}
            for rows in c.alternate(list(ROWS), r):
                for name in c.alternate(list(models), r):
                    out["step", name, rows] = step_times(models[name], rows, vocab, args.steps)
                    out["head", name, rows] = head_times(models[name].lm_head, rows, width, args.steps)
                    out["frame", name, rows] = tacotron_frame_times(decoders[name], rows, args.steps)
                    if rows <= 4:
                        out["pass", name, rows] = wav2vec2_times(recognizers[name], rows, max(2, args.steps // 4))
            return out

        for (kind, name, rows), times in monitor.guard(one_round).items():
            kinds = {"step": steps, "head": heads, "frame": frames, "pass": passes}
            kinds[kind].setdefault((name, rows), []).extend(times)
    noise = monitor.sample()

    def ms(samples: dict[tuple[str, int], list[float]], name: str, rows: int) -> float:
        return statistics.median(samples[name, rows]) * 1000

    def plain_against_packed(
        names: list[str], samples: dict[tuple[str, int], list[float]], sizes: list[int] | tuple[int, ...], fmt: str
    ) -> str:
        """A table of median ms, plain and packed, and their ratio, per size."""
        rows = []
        for n in sizes:
            plain, packed = ms(samples, "plain", n), ms(samples, "packed", n)
            rows.append([n, format(plain, fmt), format(packed, fmt), f"{packed / plain:.2f}"])
        headers = [names[0], f"{names[1]}, plain ms", f"{names[1]}, packed ms", "packed ÷ plain"]
        return c.table(headers, rows)

    table = []
    for rows in ROWS:
        plain_step, packed_step = ms(steps, "plain", rows), ms(steps, "packed", rows)
        plain_head, packed_head = ms(heads, "plain", rows), ms(heads, "packed", rows)
        table.append(
            [
                rows,
                f"{plain_step:.1f}",
                f"{packed_step:.1f}",
                f"{packed_step / plain_step:.2f}",
                f"{plain_step / ms(steps, 'plain', 1):.2f} / {packed_step / ms(steps, 'packed', 1):.2f}",
                f"{plain_head:.1f}",
                f"{packed_head:.1f}",
            ]
        )
    report = "\n\n".join(
        [
            f"## A decode step, plain against packed linear layers ({shape}, {swapped} layers packed, "
            f"{rounds} round(s) x {args.steps} steps, medians)",
            c.table(
                [
                    "rows",
                    "step, plain ms",
                    "step, packed ms",
                    "packed ÷ plain",
                    "step ÷ 1-row step: plain / packed",
                    "LM head, plain ms",
                    "LM head, packed ms",
                ],
                table,
            ),
            f"## A Tacotron 2 decoder frame, plain against packed ({'tiny' if args.quick else 'full size'}, "
            f"{tacotron_swapped} layers packed: both LSTM cells and the linear layers over the size floor)",
            plain_against_packed(["sentences", "frame"], frames, ROWS, ".2f"),
            f"## A Wav2Vec 2.0 pass over 1.75 s windows, plain against packed ({'1 layer' if args.quick else 'base'}, "
            f"{w2v_swapped} layers packed)",
            plain_against_packed(["windows", "pass"], passes, [r for r in ROWS if r <= 4], ".1f"),
            c.noise_line(noise),
        ]
    )
    payload = {
        "machine": c.machine_info(torch_threads=torch.get_num_threads()),
        "shape": shape,
        "packed_layers": swapped,
        "steps": {f"{k[0]} x{k[1]}": v for k, v in steps.items()},
        "heads": {f"{k[0]} x{k[1]}": v for k, v in heads.items()},
        "tacotron_frames": {f"{k[0]} x{k[1]}": v for k, v in frames.items()},
        "wav2vec2_passes": {f"{k[0]} x{k[1]}": v for k, v in passes.items()},
        "noise": noise,
    }
    c.finish("prepack", args, report, payload)


if __name__ == "__main__":
    main()

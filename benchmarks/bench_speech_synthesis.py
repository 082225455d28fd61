"""Speech synthesis: time to first audio against total time, and each vocoder's real-time factor,
served over gRPC against the same model in process, measured in the same run.

The models are the tts plugin's pairings at their published sizes with random weights
(``weights = "random"``: Tacotron 2 28 M parameters, WaveGlow 268 M, WaveRNN 4.5 M), seeded
so that the server's and this process's copies are the same; random Tacotron weights never
stop by themselves, so each sentence is capped at ``--frames-per-char`` frames per symbol.

1. **First audio.** A five-sentence text with ``tacotron2-griffinlim``: from the call to the
   first audio chunk, and to the end, over gRPC (a server in its own process, sync Client)
   and in process (``modelplex.tasks.speech_synthesis.offline.synthesize``, the same code
   without the server, in a process of its own once the server is gone, with the same torch
   threads, ``--threads``). The target is first audio at <= 0.25 of the total.
2. **Real-time factor** (processing seconds per second of audio; < 1 is faster than real
   time) of each pairing on one sentence, served and in process, and of each vocoder alone
   on a fixed mel spectrogram. The served audio is checked equal to the in-process audio.

    python benchmarks/bench_speech_synthesis.py            # about 15 minutes on 2 busy CPU cores
    python benchmarks/bench_speech_synthesis.py --quick    # tiny models: seconds, checks the plumbing
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import modelplex_server, workdir  # noqa: E402

FIVE = (
    "The first sentence is a short one. "
    "Then comes a second, a little longer than the first. "
    "The third sentence says nothing at all. "
    "A fourth one follows it. "
    "And the fifth sentence ends the text."
)
ONE = "A sentence for every vocoder."
PAIRINGS = ("tacotron2-griffinlim", "tacotron2-waveglow", "tacotron2-wavernn")


def settings(args: argparse.Namespace, spec: str) -> dict[str, object]:
    out: dict[str, object] = {
        "random_size": "tiny" if args.quick else "full",
        "gate_threshold": 1.0,
        "max_frames_per_char": args.frames_per_char,
        "piece_frames": args.piece_frames,
        "cpu_prepack": not args.no_prepack,
    }
    if spec == "tacotron2-wavernn":  # ~24x slower than real time on a CPU: a short sentence only
        out["max_decoder_steps"] = args.wavernn_frames
    return out


def toml(args: argparse.Namespace) -> str:
    lines = []
    for spec in args.pairings:
        s = ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in settings(args, spec).items())
        s = s.replace("True", "true").replace("False", "false")
        lines += [
            "[[models]]",
            f'spec = "{spec}"',
            'weights = "random"',
            'devices = ["cpu"]',
            f"cpu_threads = {args.threads}",
            f"settings = {{ {s} }}",
            "",
        ]
    return "\n".join(lines)


def in_process(args: argparse.Namespace, spec: str):  # type: ignore[no-untyped-def]
    from modelplex import LoadContext, WeightsChoice, WeightsSource
    from modelplex.tasks.speech_synthesis.settings import SpeechSynthesisSettings
    from modelplex_tts.plugin import build_specs
    from modelplex_tts.settings import TTSSettings

    found = {s.name: s for s in build_specs()}[spec]
    ctx = LoadContext(
        spec,
        found,
        found.variant(None),
        WeightsChoice(WeightsSource.RANDOM),
        "cpu",
        TTSSettings(**settings(args, spec)),
        SpeechSynthesisSettings(),
    )
    model = found.factory(ctx)
    model.load()
    model.warmup()
    return model


def served(client, spec: str, text: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """One Synthesize call over gRPC, timed at the client."""
    start = time.perf_counter()
    first = 0.0
    parts = []
    audio_s = 0.0
    for m in client.synthesize(text, model=spec, encoding="float32"):
        kind = m.WhichOneof("content")
        if kind == "audio":
            if not first:
                first = time.perf_counter() - start
            parts.append(m.audio.audio_content)
        elif kind == "summary":
            audio_s = m.summary.audio_seconds
    total = time.perf_counter() - start
    return {"first": first, "total": total, "audio_s": audio_s, "sha": hashlib.sha256(b"".join(parts)).hexdigest()}


def run_served(args: argparse.Namespace) -> dict[str, list[dict[str, object]]]:
    from modelplex_client._speech_synthesis_calls import SpeechSynthesisCalls
    from modelplex_client.client import Client

    class TTSClient(Client, SpeechSynthesisCalls):
        pass

    runs: dict[str, list[dict[str, object]]] = {}
    with workdir() as wd, modelplex_server(wd, toml(args)) as server, TTSClient(server.address, timeout=3600) as client:
        for spec in args.pairings:
            served(client, spec, "Warm up.")
        for _ in range(args.repeats):
            runs.setdefault("five", []).append(served(client, args.pairings[0], FIVE))
            for spec in args.pairings:
                runs.setdefault(spec, []).append(served(client, spec, ONE))
    return runs


def run_in_process(args: argparse.Namespace) -> dict[str, list[dict[str, object]]]:
    """The same calls on the same models in this process, on a thread of its own with the same
    torch threads as the server's instances."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from modelplex.tasks.speech_synthesis.offline import synthesize

    pool = ThreadPoolExecutor(1)

    def here(fn, *a, **kw):  # type: ignore[no-untyped-def]
        return pool.submit(fn, *a, **kw).result()

    here(torch.set_num_threads, args.threads)
    models = {spec: here(in_process, args, spec) for spec in args.pairings}

    def one(spec: str, text: str) -> dict[str, object]:
        out = here(synthesize, models[spec], text, encoding="float32")
        audio_s = len(out.audio) / 4 / out.sample_rate
        sha = hashlib.sha256(out.audio).hexdigest()
        return {"first": out.first_audio_s, "total": out.total_s, "audio_s": audio_s, "sha": sha}

    runs: dict[str, list[dict[str, object]]] = {}
    for _ in range(args.repeats):
        runs.setdefault("five", []).append(one(args.pairings[0], FIVE))
        for spec in args.pairings:
            runs.setdefault(spec, []).append(one(spec, ONE))
    mel = torch.randn(80, 43) - 5  # 0.5 s of frames
    for spec in args.pairings:
        vocoder = models[spec].vocoder
        start = time.perf_counter()
        audio = here(vocoder.vocode, mel, torch.Generator().manual_seed(0))
        rtf = (time.perf_counter() - start) / (audio.numel() / vocoder.sample_rate)
        runs.setdefault("vocoder", []).append({"spec": spec, "rtf": rtf})
    return runs


def _median(runs: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)  # type: ignore[arg-type]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny models: checks the plumbing in seconds")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--frames-per-char", type=float, default=2.0)
    p.add_argument("--piece-frames", type=int, default=40)
    p.add_argument("--wavernn-frames", type=int, default=24)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of each instance, served and in process (default 1: on a busy 2-core machine "
        "a 2-thread OpenMP team waits for a core at every parallel region and runs many times slower)",
    )
    p.add_argument(
        "--pairings", nargs="+", choices=PAIRINGS, default=list(PAIRINGS), help="(Griffin-Lim always runs first)"
    )
    p.add_argument("--no-prepack", action="store_true", help="cpu_prepack = false: PyTorch's own products")
    p.add_argument("--in-process-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.pairings = [PAIRINGS[0], *(x for x in PAIRINGS[1:] if x in args.pairings)]
    if args.in_process_worker:
        print(json.dumps(run_in_process(args)))
        return
    load_before = os.getloadavg()[0]
    remote = run_served(args)
    # The in-process side in a fresh process of its own, like the server's, after the server is gone.
    argv = [sys.executable, __file__, "--in-process-worker", *sys.argv[1:]]
    local = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    for key in remote:
        same = {r["sha"] for r in remote[key]} == {r["sha"] for r in local[key]}
        assert same, f"{key}: the served audio differs from the in-process audio"
    rows = ["| first audio, 5 sentences (Tacotron 2 + Griffin-Lim) | first audio s | total s | first / total |"]
    rows.append("|---|---|---|---|")
    for name, runs in (("served (gRPC)", remote["five"]), ("in process", local["five"])):
        first, total = _median(runs, "first"), _median(runs, "total")
        rows.append(f"| {name} | {first:.2f} | {total:.2f} | {first / total:.3f} |")
    rows.append(f"\naudio: {_median(remote['five'], 'audio_s'):.2f} s; served audio equal to in-process: yes\n")
    rows.append("| pairing | RTF served | RTF in process | served / in process | vocoder alone RTF (in process) |")
    rows.append("|---|---|---|---|---|")
    vocoders = {r["spec"]: float(r["rtf"]) for r in local["vocoder"]}
    for spec in args.pairings:
        rs = statistics.median(float(r["total"]) / float(r["audio_s"]) for r in remote[spec])
        rl = statistics.median(float(r["total"]) / float(r["audio_s"]) for r in local[spec])
        rows.append(f"| {spec} | {rs:.2f} | {rl:.2f} | {rs / rl:.3f} | {vocoders[spec]:.2f} |")
    rows.append(f"\nload average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

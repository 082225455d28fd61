"""Streaming speech recognition: real-time factor, cost per chunk over a long stream, final-result
latency and concurrency, each against the in-process model measured in the same run.

    .venv/bin/python benchmarks/bench_speech_recognition.py [--seconds 60] [--spec wav2vec2-base-960h]

The model is a base-size Wav2Vec 2.0 (torchaudio's WAV2VEC2_ASR_BASE_960H architecture, random
weights) served over loopback gRPC by a server in this process (its own event loop thread); the
audio is speech-like synthetic sound (tests/speech_audio.py) as LINEAR16 at 16 kHz.

- RTF: wall time of a stream sent as fast as possible (interim results on) / its audio length,
  against the in-process model's one pass over the same segments (what the finals alone cost).
- Cost per chunk: 1 s chunks sent in lock step (the next after the previous one's interim
  result), one segment growing the whole stream (vad = "none"); first 10 chunks against the
  last 10.
- Final latency: in that lock-step stream (no backlog), from the client half-closing it to its
  final result, against the in-process decode of that segment.
- RTF with 1, 4 and 8 concurrent streams.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from modelplex.testing import running_server  # noqa: E402
from modelplex_client.pb import speech_recognition_pb2 as pb  # noqa: E402
from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc  # noqa: E402
from speech_audio import RATE, linear16, silence, utterance  # noqa: E402

CHUNK = RATE // 10 * 2  # 100 ms of LINEAR16


def speech(seconds: float, seed: int, gaps: bool = True) -> bytes:
    parts, total = [], 0
    while total < seconds * RATE:
        parts.append(utterance(seed * 100 + len(parts), syllables=10))
        if gaps:
            parts.append(silence(0.8, seed + len(parts)))
        total = sum(len(p) for p in parts)
    return linear16(np.concatenate(parts)[: int(seconds * RATE)])


def requests(model, audio, chunk=CHUNK, gate=None):
    cfg = pb.RecognitionConfig(encoding=pb.RecognitionConfig.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE)
    yield pb.StreamingRecognizeRequest(
        streaming_config=pb.StreamingRecognitionConfig(model=model, config=cfg, interim_results=True)
    )
    for i in range(0, len(audio), chunk):
        if gate is not None:
            gate(i // chunk)
        yield pb.StreamingRecognizeRequest(audio_content=audio[i : i + chunk])


def in_process(spec: str):
    """The same model built by the plugin's own code, called directly."""
    from modelplex import LoadContext, WeightsChoice, WeightsSource
    from modelplex_speech.plugin import build_specs

    s = {x.name: x for x in build_specs()}[spec]
    model = s.factory(LoadContext(spec, s, s.variant(None), WeightsChoice(WeightsSource.RANDOM), "cpu", s.settings()))
    model.load()
    return model


def decode_time(model, audio: bytes, spans) -> float:
    x = torch.from_numpy(np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768)
    start = time.perf_counter()
    for a, b in spans:
        model.transcribe([x[round(a * RATE / 1000) : round(b * RATE / 1000)]], "en")
    return time.perf_counter() - start


def run_stream(stub, model, audio, chunk=CHUNK, gate=None, on_response=None):
    started = time.perf_counter()
    finals, closed = [], [None]

    def gated(i):
        if gate is not None:
            gate(i)

    def reqs():
        yield from requests(model, audio, chunk, gated)
        closed[0] = time.perf_counter()

    for m in stub.StreamingRecognize(reqs(), timeout=3600):
        if on_response is not None:
            on_response(m)
        finals += [(r.result_start_ms, r.result_end_ms, time.perf_counter()) for r in m.results if r.is_final]
    return time.perf_counter() - started, finals, closed[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--concurrent-seconds", type=float, default=20.0, help="audio per stream at 4 and 8 streams")
    p.add_argument("--spec", default="wav2vec2-base-960h")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = in_process(args.spec)
    audio = speech(args.seconds, 1)
    entry = {"spec": args.spec, "name": "asr", "weights": "random", "devices": ["cpu"]}
    flat = {**entry, "name": "asr-flat", "vad": "none", "max_segment_s": max(60.0, args.seconds + 1)}
    rows = []
    with running_server({"models": [entry, flat]}) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.SpeechRecognitionStub(channel)
        run_stream(stub, "asr", speech(3, 9))  # warm-up
        wall, finals, closed = run_stream(stub, "asr", audio)
        offline = decode_time(model, audio, [(a, b) for a, b, _ in finals])
        rows.append(("RTF, one stream", f"{wall / args.seconds:.3f}", f"{offline / args.seconds:.3f}", wall / offline))
        # Cost per chunk, lock step: chunk k+1 goes once chunk k's interim (or the final) came back.
        continuous = speech(args.seconds, 2, gaps=False)
        answered = [threading.Event() for _ in range(int(args.seconds) + 3)]
        sent_at: dict[int, float] = {}
        costs: list[float] = []
        ahead = 2  # a window's interim needs its look-ahead: answers trail the chunks by one or two

        def gate(i):
            if i >= ahead:
                answered[i - ahead].wait(30)
            sent_at[i] = time.perf_counter()

        def on_response(m):
            now = time.perf_counter()
            for r in m.results:
                k = int(r.result_end_ms // 1000) - 1
                if not r.is_final and 0 <= k < len(answered) and not answered[k].is_set():
                    costs.append(now - sent_at.get(k + ahead - 1, now))
                    answered[k].set()

        _, finals, closed = run_stream(stub, "asr-flat", continuous, chunk=RATE * 2, gate=gate, on_response=on_response)
        head, tail = statistics.mean(costs[:10]), statistics.mean(costs[-10:])
        rows.append(("cost per 1 s chunk, first 10 / last 10 (s)", f"{head:.3f}", f"{tail:.3f}", tail / head))
        # The stream kept up (lock step), so what follows the last chunk is the final pass itself.
        a, b, t_final = finals[-1]
        last = decode_time(model, continuous, [(a, b)])
        latency = t_final - closed
        rows.append(
            (
                f"last chunk -> final, {(b - a) / 1000:.0f} s segment (s)",
                f"{latency:.3f}",
                f"{last:.3f}",
                latency / last,
            )
        )

        for n in (1, 4, 8):
            clips = [speech(args.concurrent_seconds, 10 + i) for i in range(n)]
            walls = [0.0] * n
            spans: list = [None] * n

            def one(i, clips=clips, walls=walls, spans=spans):
                walls[i], f, _ = run_stream(stub, "asr", clips[i])
                spans[i] = [(a, b) for a, b, _ in f]

            started = time.perf_counter()
            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            total = time.perf_counter() - started
            offline = sum(decode_time(model, c, s) for c, s in zip(clips, spans, strict=True))
            audio_s = n * args.concurrent_seconds
            rows.append((f"RTF, {n} streams", f"{total / audio_s:.3f}", f"{offline / audio_s:.3f}", total / offline))
    print(f"{args.spec} (random weights), {args.seconds:g} s stream, torch threads {torch.get_num_threads()}")
    print("| measure | server | in-process | ratio |\n|---|---|---|---|")
    for name, server_v, local_v, ratio in rows:
        print(f"| {name} | {server_v} | {local_v} | {ratio:.2f} |")


if __name__ == "__main__":
    main()

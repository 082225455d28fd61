"""Load-and-fault test of a modelplex server (issue 7); its results are in docs/reliability.md.

It starts its own server on 127.0.0.1 (loopback only) from a config in a temp dir: the demo profile's
models (or ``--models FILE``'s), each with a small queue so that load shedding happens, a short grace
period and shutdown bound, JSON logs and metrics. Then two phases:

1. **Load**: ``--clients`` clients, each on its own channel, call every RPC of every model ListModels
   reports (a task whose stubs are not in ``modelplex_client.pb``, or that this script does not know,
   is skipped and named) for ``--duration`` s, mixing valid calls with faults: streams cancelled after
   a few messages, channels closed mid-call, bad parameters, unknown models, malformed bytes, requests
   over ``max_message_mb``. Each outcome is expected or not for its kind; each answer is checked (its
   request id echoed, nothing lost or duplicated in a stream). RSS is sampled from a warm-up to the end; then
   the metrics must show nothing active or queued, and the log no ERROR line.
2. **SIGTERM**: the same load plus a burst of long calls, then SIGTERM. Every call must end OK or be
   refused or cut cleanly (UNAVAILABLE, CANCELLED, RESOURCE_EXHAUSTED; a call in flight is not cut
   before the grace period is over), never hang or fail otherwise; the process must be gone within
   grace_period_s + shutdown_bound_s.

Exit status 1 if anything was unexpected. Every call has a timeout, the run a hard deadline, and the
server is killed in a ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from PIL import Image

from modelplex.server.config import demo_config_text
from modelplex_client.pb import models_pb2, models_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # never anything else: this script only talks over loopback
MALFORMED = [b"\xff\xff\xff", b"\x0a\x05ab", b"\x08\x80\x80", b"\x0a\x02\xff\xfe"]  # none parses as a request
KIND_WEIGHTS = {"ok": 30, "cancel": 14, "drop": 10, "bad": 12, "unknown": 4, "malformed": 12, "oversized": 6}
# What each kind may end with (besides its answer's check). During shutdown UNAVAILABLE and CANCELLED too.
EXPECTED = {
    "ok": {"OK", "RESOURCE_EXHAUSTED"},  # RESOURCE_EXHAUSTED: the model's queue is full (load shedding)
    "cancel": {"OK", "CANCELLED", "RESOURCE_EXHAUSTED"},  # OK: the stream ended before it was cancelled
    "drop": {"OK", "CANCELLED", "RESOURCE_EXHAUSTED"},
    "bad": {"INVALID_ARGUMENT"},
    "unknown": {"NOT_FOUND"},
    "malformed": {"INVALID_ARGUMENT"},
    "oversized": {"RESOURCE_EXHAUSTED"},
    "long": {"OK", "RESOURCE_EXHAUSTED"},  # the burst in flight at SIGTERM
}


def _png(size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((size, size), 40).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def _check_generate(req: Any, msgs: list[Any]) -> str | None:
    """Exactly one final chunk, the last, and as many tokens streamed as its usage counts."""
    finals = [i for i, m in enumerate(msgs) if m.finish_reason]
    n = sum(len(m.token_ids) for m in msgs)
    if finals != [len(msgs) - 1] or n != msgs[-1].usage.completion_tokens:
        return f"final chunks at {finals} of {len(msgs)}; {n} tokens, usage {msgs[-1].usage.completion_tokens}"
    return None


def _check_synthesize(req: Any, msgs: list[Any]) -> str | None:
    """The format first, the summary last, audio between, as many samples as the summary counts."""
    kinds = [m.WhichOneof("content") for m in msgs]
    samples = sum(len(m.audio.audio_content) for m in msgs[1:-1]) // 2  # LINEAR16
    if kinds[0] != "format" or kinds[-1] != "summary" or set(kinds[1:-1]) - {"audio"}:
        return f"messages out of order: {kinds[:3]}...{kinds[-2:]}"
    return None if samples == msgs[-1].summary.samples else f"{samples} samples, summary {msgs[-1].summary.samples}"


@dataclass
class Rpc:
    """One RPC of a task: its request's fields (valid, long, and bad: INVALID_ARGUMENT) and its answer's check."""

    name: str
    stream: bool
    request: str  # the request message's class in the task's pb module
    ok: dict[str, Any]
    check: Any  # (request, [responses]) -> a problem, or None
    bad: list[dict[str, Any]]
    long: dict[str, Any] = field(default_factory=dict)  # fields replaced in the SIGTERM burst's calls
    # Bad requests the server can only find bad once the model decodes them, after the queue:
    # with the queue full they are shed with RESOURCE_EXHAUSTED first, which is fine.
    queued_bad: list[dict[str, Any]] = field(default_factory=list)


PNG, HELLO = _png(), "Hello there. How are you today?"
LINEAR16 = "SYNTHESIS_ENCODING_LINEAR16"
# Per task id: (pb module, service, RPCs). Tasks here whose stubs are not in pb/ are skipped at run time.
TASKS: dict[str, tuple[str, str, list[Rpc]]] = {
    "image_classification": ("image_classification_pb2", "ImageClassification", [
        Rpc("Classify", False, "ClassifyRequest", {"images": [{"encoded": PNG}] * 2},
            lambda req, msgs: None if len(msgs[0].results) == len(req.images) else "results != images",
            [{}, {"images": [{"encoded": b""}]}], long={"images": [{"encoded": PNG}] * 32},
            queued_bad=[{"images": [{"encoded": b"not an image"}]}])]),
    "text_generation": ("text_generation_pb2", "TextGeneration", [
        Rpc("Generate", True, "GenerateRequest", {"prompt": "Once upon a time", "max_new_tokens": 24},
            _check_generate, [{"prompt": "x", "temperature": -1}, {"prompt": "x", "top_p": 2.0},
                              {"prompt": "x", "max_new_tokens": 10**7}], long={"max_new_tokens": 0}),
        Rpc("Complete", False, "CompleteRequest", {"prompt": "Once upon a time", "max_new_tokens": 24},
            _check_generate, [{"prompt": "x", "stop": [""]}])]),
    "image_generation": ("image_generation_pb2", "ImageGeneration", [
        Rpc("Generate", True, "ImageGenerationGenerateRequest", {"num_images": 2, "seed": 1},
            lambda req, msgs: None if [m.index for m in msgs] == list(range(req.num_images)) else "indices",
            [{"num_images": -1}, {"num_images": 1, "truncation": 5}], long={"num_images": 8})]),
    "speech_synthesis": ("speech_synthesis_pb2", "SpeechSynthesis", [
        Rpc("Synthesize", True, "SynthesizeRequest", {"text": HELLO, "encoding": LINEAR16}, _check_synthesize,
            [{"text": ""}, {"text": "hi", "sample_rate_hz": 1}], long={"text": HELLO * 4}),
        Rpc("SynthesizeWav", False, "SynthesizeWavRequest", {"text": HELLO},
            lambda req, msgs: None if msgs[0].wav[:4] == b"RIFF" else "not a WAV", [{"text": ""}])]),
    "speech_recognition": ("speech_recognition_pb2", "SpeechRecognition", [  # StreamingRecognize (bidi): not covered
        Rpc("Recognize", False, "RecognizeRequest",
            {"audio_content": bytes(32000), "config": {"encoding": "AUDIO_ENCODING_LINEAR16", "sample_rate_hz": 16000}},
            lambda req, msgs: None, [{"config": {"encoding": "AUDIO_ENCODING_LINEAR16", "sample_rate_hz": -1}}])]),
}  # fmt: skip


@dataclass
class Target:
    """One RPC of one served model."""

    model: str
    service: str
    rpc: Rpc
    pb: Any
    pb_grpc: Any

    def request(self, rid: str, fields: dict[str, Any], model: str | None = None) -> Any:
        return getattr(self.pb, self.rpc.request)(model=model or self.model, request_id=rid, **fields)

    def stub(self, ch: grpc.aio.Channel) -> Any:
        return getattr(getattr(self.pb_grpc, f"{self.service}Stub")(ch), self.rpc.name)

    def raw(self, ch: grpc.aio.Channel) -> Any:
        """The RPC without serializers: bytes in, bytes out."""
        path = f"/modelplex.v1.{self.service}/{self.rpc.name}"
        return ch.unary_stream(path) if self.rpc.stream else ch.unary_unary(path)


class Run:
    """Counts every call's outcome per phase, target and kind; keeps the unexpected ones."""

    def __init__(self, addr: str, args: argparse.Namespace) -> None:
        self.addr, self.args = addr, args
        self.max_bytes = int(args.max_message_mb * 1024 * 1024)
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.unexpected: list[str] = []
        self.calls, self.phase, self.stop_at = 0, "load", 0.0
        self.sigterm_at: float | None = None

    async def call(self, ch: grpc.aio.Channel, t: Target, kind: str, timeout: float) -> str:
        """One call of the given kind, its outcome recorded. A hang shows as DEADLINE_EXCEEDED or HANG."""
        self.calls += 1
        rid = f"{self.phase}-{self.calls}-{kind}"
        expected = EXPECTED[kind] | ({"UNAVAILABLE", "CANCELLED"} if self.phase == "sigterm" else set())
        valid = t.request(rid, t.rpc.ok | (t.rpc.long if kind == "long" else {}))
        started = time.monotonic()
        own = None
        try:
            if kind in ("malformed", "oversized"):
                data = random.choice(MALFORMED)
                if kind == "oversized":  # a valid request, its request_id padded past the limit
                    data = t.request(rid + "x" * self.max_bytes, t.rpc.ok).SerializeToString()
                c = t.raw(ch)(data, timeout=timeout)
                _ = [m async for m in c] if t.rpc.stream else await c
                outcome = "OK"
            elif kind in ("bad", "unknown"):
                fields = random.choice(t.rpc.bad + t.rpc.queued_bad) if kind == "bad" else t.rpc.ok
                expected |= {"RESOURCE_EXHAUSTED"} if kind == "bad" and fields in t.rpc.queued_bad else set()
                req = t.request(rid, fields, None if kind == "bad" else "no-such-model")
                c = t.stub(ch)(req, timeout=timeout)
                _ = [m async for m in c] if t.rpc.stream else await c
                outcome = "OK"
            elif kind in ("cancel", "drop"):
                if kind == "drop":  # a client that goes away: its own channel, closed mid-call
                    own = ch = grpc.aio.insecure_channel(self.addr)
                c = t.stub(ch)(valid, timeout=timeout)
                if t.rpc.stream:
                    for _ in range(random.randint(1, 4)):
                        if await c.read() is grpc.aio.EOF:
                            break
                else:
                    await asyncio.sleep(random.uniform(0, 0.05))
                if own is not None:
                    await own.close()  # no grace: the call is cut and the connection goes away
                else:
                    c.cancel()
                outcome = (await asyncio.wait_for(c.code(), timeout)).name
            else:  # ok, long: read everything, check it
                c = t.stub(ch)(valid, timeout=timeout)
                msgs = [m async for m in c] if t.rpc.stream else [await c]
                ids = {m.request_id for m in msgs}
                problem = f"request ids {ids} for {rid}" if ids != {rid} else t.rpc.check(valid, msgs)
                outcome = f"BAD_RESPONSE: {problem}" if problem else "OK"
        except grpc.aio.AioRpcError as e:
            outcome = e.code().name + ("" if e.code().name in expected else f": {e.details()[:160]}")
        except TimeoutError:
            outcome = "HANG"  # our own timeout ended a wait that grpc's deadline should have ended
        finally:
            if own is not None:
                await own.close()
        if self.cut_early(kind, outcome, started):
            outcome = f"CUT_EARLY: {outcome} {time.monotonic() - self.sigterm_at:.2f} s after SIGTERM"  # type: ignore[operator]
        self.counts[f"{self.phase} {t.model}.{t.rpc.name} {kind}"][outcome] += 1
        if outcome.split(":")[0] not in expected:
            self.unexpected.append(f"{self.phase} {t.model}.{t.rpc.name} {kind} {rid}: {outcome}")
        return outcome

    def cut_early(self, kind: str, outcome: str, started: float) -> bool:
        """A call in flight well before SIGTERM (0.5 s: not racing the listener's close) that the server
        ended UNAVAILABLE or CANCELLED before the grace period was over: it should have been let finish."""
        if self.sigterm_at is None or kind not in ("ok", "long") or started > self.sigterm_at - 0.5:
            return False
        return outcome in ("UNAVAILABLE", "CANCELLED") and time.monotonic() < self.sigterm_at + self.args.grace - 0.1


async def worker(run: Run, targets: list[Target], timeout: float) -> None:
    """A client on its own channel, calling until ``run.stop_at``: a random target, a random kind."""
    kinds = list(KIND_WEIGHTS)
    async with grpc.aio.insecure_channel(run.addr) as ch:
        while time.monotonic() < run.stop_at and run.calls < run.args.max_calls:
            t = random.choice(targets)
            kind = random.choices(kinds, [KIND_WEIGHTS[k] for k in kinds])[0]
            outcome = await run.call(ch, t, "drop" if kind == "cancel" and not t.rpc.stream else kind, timeout)
            if outcome == "UNAVAILABLE":
                await asyncio.sleep(0.05)  # a server that is going away: back off a little, as clients do


def rss_mb(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[1]) / 1024  # type: ignore[index]


def scrape(port: int) -> tuple[dict[str, float], dict[str, float]]:
    """From the server's metrics: the per-model gauges of requests still active or queued, and
    the calls it counted per status code."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    gauges = {k: float(v) for k, v in re.findall(r"^(modelplex_model_(?:active|queued)\{[^}]*\}) (\S+)$", text, re.M)}
    codes: dict[str, float] = collections.defaultdict(float)
    for code, v in re.findall(r'^modelplex_requests_total\{.*code="(\w+)".*\} (\S+)$', text, re.M):
        codes[code] += float(v)
    return gauges, dict(codes)


def server_errors(log: Path) -> list[str]:
    """The server's ERROR lines (JSON log: with the request id, whose name says the call's kind)."""
    out = []
    for line in log.read_text().splitlines():
        entry = json.loads(line) if line.startswith("{") else {"level": "error" if "Traceback" in line else ""}
        if entry["level"] in ("error", "critical"):
            out.append(f"{entry.get('request_id', '')} {entry.get('message', line)[:200]}")
    return out


def config_toml(args: argparse.Namespace) -> str:
    """The demo profile's models (or --models'), each with a small queue, under this run's [server]."""
    models = tomllib.loads(Path(args.models).read_text() if args.models else demo_config_text())["models"]
    server = {"host": HOST, "port": 0, "metrics_port": 0, "grace_period_s": args.grace, "shutdown_bound_s": args.bound,
              "max_message_mb": args.max_message_mb, "max_stream_duration_s": 60.0, "log_format": "json"}  # fmt: skip
    lines = ["[server]", *(f"{k} = {json.dumps(v)}" for k, v in server.items())]
    for m in models:
        m["max_queue_size"] = args.queue
        lines += ["[[models]]", *(f"{k} = {json.dumps(v)}" for k, v in m.items() if k != "settings")]
        lines += [f"settings = {{{', '.join(f'{k} = {json.dumps(v)}' for k, v in m.get('settings', {}).items())}}}"]
    return "\n".join(lines) + "\n"


async def targets_of(addr: str, report: dict[str, Any]) -> list[Target]:
    """Every RPC of every model ListModels reports, for the tasks this script and pb/ know."""
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = models_pb2_grpc.ModelRepositoryStub(ch)
        try:
            models = (await stub.ListModels(models_pb2.ListModelsRequest(), timeout=10)).models
        except grpc.aio.AioRpcError as e:
            raise SystemExit(f"ListModels failed: {e.code().name} {e.details()}") from None
    targets, skipped = [], []
    for info in models:
        if info.task not in TASKS:
            skipped.append(f"{info.name} (task {info.task}: unknown to this script)")
            continue
        module, service, rpcs = TASKS[info.task]
        try:
            pb = importlib.import_module(f"modelplex_client.pb.{module}")
            pb_grpc = importlib.import_module(f"modelplex_client.pb.{module}_grpc")
        except ImportError:
            skipped.append(f"{info.name} (task {info.task}: no {module} in modelplex_client.pb)")
            continue
        targets += [Target(info.name, service, rpc, pb, pb_grpc) for rpc in rpcs]
    report["models"], report["skipped"] = {i.name: i.task for i in models}, skipped
    print("models:", report["models"], "skipped:", skipped or "none")
    return targets


async def phases(args: argparse.Namespace, proc: subprocess.Popen[bytes], log: Path, report: dict[str, Any]) -> Run:
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), args.startup_timeout)  # type: ignore[union-attr]
    if not (m := re.match(rf"modelplex serving on {re.escape(HOST)}:(\d+)", line.decode())):
        raise SystemExit(f"the server did not start: {line!r}; see {log}")
    run = Run(f"{HOST}:{m[1]}", args)
    metrics_port = int(re.search(r"metrics on http://[\d.]+:(\d+)", log.read_text())[1])  # type: ignore[index]
    targets = await targets_of(run.addr, report)
    # -- 1: load --------------------------------------------------------------------------------
    start = time.monotonic()
    run.stop_at = start + args.duration
    clients = [asyncio.create_task(worker(run, targets, args.call_timeout)) for _ in range(args.clients)]
    await asyncio.sleep(min(args.warmup, args.duration / 4))
    rss: list[tuple[float, float]] = []
    while not rss or time.monotonic() < run.stop_at:  # a sample every 5 s from the warm-up on
        rss.append((round(time.monotonic() - start, 1), rss_mb(proc.pid)))
        await asyncio.sleep(min(5.0, max(0.0, run.stop_at - time.monotonic())))
    await asyncio.gather(*clients)
    rss.append((round(time.monotonic() - start, 1), rss_mb(proc.pid)))
    await asyncio.sleep(1.0)  # let the queues settle
    after, codes = scrape(metrics_port)
    errors = server_errors(log)
    report["server_log_errors"] = errors[:20]
    growth = (rss[-1][1] - rss[0][1]) / rss[0][1]
    third = max(
        1, len(rss) // 3
    )  # RSS swings with the calls in flight: compare the peaks of the first and last thirds too
    peaks = [max(r for _, r in rss[:third]), max(r for _, r in rss[-third:])]
    report["load"] = {"calls": run.calls, "seconds": round(time.monotonic() - start, 1), "rss_mb": rss,
                      "rss_growth": round(growth, 4), "rss_peaks_first_last_third": peaks, "gauges_after": after,
                      "server_codes": codes}  # fmt: skip
    problems = [f"still active or queued: {after}"] if any(after.values()) else []
    problems += [f"the server counted {codes[c]:.0f} {c} calls" for c in ("UNKNOWN", "INTERNAL") if c in codes]
    problems += [f"server log: {e}" for e in errors[:20]] + ([f"RSS grew {growth:+.1%}"] if growth > 0.10 else [])
    run.unexpected += [f"load: {p}" for p in problems]
    # -- 2: SIGTERM mid-load --------------------------------------------------------------------
    run.phase, n_load, bound = "sigterm", run.calls, args.grace + args.bound
    run.stop_at = float("inf")  # until the process is gone (the wait below is bounded)
    clients = [asyncio.create_task(worker(run, targets, bound + 10)) for _ in range(args.clients)]
    longs = [t for t in targets if t.rpc.long] or targets
    burst_ch = grpc.aio.insecure_channel(run.addr)
    burst = asyncio.gather(*[run.call(burst_ch, random.choice(longs), "long", bound + 10) for _ in range(args.burst)])
    await asyncio.sleep(args.sigterm_after)
    t0 = run.sigterm_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc: int | None = await asyncio.wait_for(asyncio.to_thread(proc.wait), bound + 30)
    except TimeoutError:
        rc = None  # still running: killed in main()'s finally
    exit_s = time.monotonic() - t0
    run.stop_at = time.monotonic() + 1.0  # a second more of calls to a server that is gone: refused at once
    await asyncio.gather(burst, *clients)
    await burst_ch.close()
    report["sigterm"] = {"exit_s": round(exit_s, 2), "bound_s": bound, "returncode": rc, "calls": run.calls - n_load}
    if exit_s > bound + args.exit_slack or rc != 0:
        run.unexpected.append(f"sigterm: gone {exit_s:.2f} s after SIGTERM, status {rc} (bound {bound} s)")
    return run


def summary(run: Run, report: dict[str, Any]) -> None:
    print(f"\n{'phase target kind':<52} outcomes")
    for k, v in sorted(run.counts.items()):
        print(f"{k:<52} " + ", ".join(f"{o.split(':')[0]}={n}" for o, n in sorted(v.items())))
    load, s = report["load"], report["sigterm"]
    rss, peaks = [r for _, r in load["rss_mb"]], load["rss_peaks_first_last_third"]
    print(f"\nload: {load['calls']} calls in {load['seconds']} s; server RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB "
          f"({load['rss_growth']:+.1%}; min {min(rss):.0f}, max {max(rss):.0f}; "
          f"peak of the first third {peaks[0]:.0f}, of the last {peaks[1]:.0f})")  # fmt: skip
    print(f"sigterm: {s['calls']} calls; the server was gone {s['exit_s']} s after SIGTERM "
          f"(grace + bound {s['bound_s']} s), exit status {s['returncode']}")  # fmt: skip
    for u in run.unexpected[:40]:
        print("UNEXPECTED", u)
    print(f"{len(run.unexpected)} unexpected")


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="modelplex-load-fault-"))
    (tmp / "config.toml").write_text(config_toml(args))
    log = tmp / "server.log"
    cmd = [sys.executable, "-m", "modelplex.server.cli", "--config", str(tmp / "config.toml")]
    with open(log, "wb") as err:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    report: dict[str, Any] = {"args": vars(args), "config": (tmp / "config.toml").read_text(), "server_log": str(log)}
    git = ["git", "-C", str(ROOT)]
    report["commit"] = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    report["uncommitted_files"] = len(
        subprocess.run([*git, "status", "--porcelain"], capture_output=True).stdout.splitlines()
    )
    report["loadavg_start"] = os.getloadavg()
    try:
        async with asyncio.timeout(args.startup_timeout + args.duration + args.grace + args.bound + 120):
            run = await phases(args, proc, log, report)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report["loadavg_end"] = os.getloadavg()
    report["counts"] = {k: dict(v) for k, v in sorted(run.counts.items())}
    report["unexpected"] = run.unexpected
    summary(run, report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"results: {out}")
    return 1 if run.unexpected else 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="~30 s: 25 s of load, 8 clients, a burst of 12")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of load before the SIGTERM phase")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--burst", type=int, default=24, help="long calls in flight at SIGTERM")
    p.add_argument("--sigterm-after", type=float, default=1.5, help="seconds into the SIGTERM phase to send it")
    p.add_argument("--models", help="a TOML file whose [[models]] replace the demo profile's")
    p.add_argument("--queue", type=int, default=4, help="max_queue_size of every model")
    p.add_argument("--grace", type=float, default=3.0, help="server.grace_period_s")
    p.add_argument("--bound", type=float, default=2.0, help="server.shutdown_bound_s")
    p.add_argument("--exit-slack", type=float, default=0.5, help="seconds past grace + bound for the process to exit")
    p.add_argument("--max-message-mb", type=float, default=1.0, help="server.max_message_mb (oversized calls pass it)")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds of load before the first RSS sample")
    p.add_argument("--call-timeout", type=float, default=60.0, help="timeout of every call in the load phase")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds for the server to load its models")
    p.add_argument("--max-calls", type=int, default=500_000, help="a hard cap on the number of calls")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/load_fault.json"), help="the JSON results")
    args = p.parse_args()
    if args.quick:
        args.duration, args.clients, args.warmup, args.burst = 25.0, 8, 5.0, 12
    return args


if __name__ == "__main__":
    a = parse_args()
    random.seed(a.seed)
    sys.exit(asyncio.run(main(a)))

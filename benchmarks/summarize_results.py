"""The spread of the headline numbers over every run kept in benchmarks/results/.

One run on a small shared machine is not a measurement: this lists each run's
headline numbers (with the commit it ran on and how busy the machine was) and
their median, for runs on the given commit (default: all).

    python benchmarks/summarize_results.py [--commit SHA-PREFIX]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commit", default="", help="only runs on a commit starting with this")
    p.add_argument(
        "--max-noise",
        type=float,
        default=0.2,
        help="skip runs in which other processes used more cores than this in a kept round (default 0.2)",
    )
    args = p.parse_args()
    runs: dict[str, list[dict]] = {"overhead": [], "resnet18": []}
    for path in sorted(c.RESULTS_DIR.glob("*-2*.json")):
        data = json.loads(path.read_text())
        if not data.get("machine", {}).get("git_commit", "").startswith(args.commit):
            continue
        noise = data.get("noise", {})
        if noise.get("kept_rounds_max_other_cores", noise.get("other_cores", 0)) > args.max_noise:
            continue
        if data.get("benchmark") in runs:
            runs[data["benchmark"]].append(data)

    rows = []
    for d in runs["overhead"]:
        seq, tp = d["sequential_us"], d["throughput"]
        floor = seq["echo floor (grpc.aio raw bytes)"]["p50_us"]
        rows.append(
            [
                d["utc"],
                d["machine"].get("git_commit", "?")[:7],
                d["noise"].get("kept_rounds_max_other_cores", d["noise"]["other_cores"]),
                floor,
                seq["modelplex Classify (raw stub)"]["p50_us"] - floor,
                seq["modelplex Classify (Client.classify)"]["p50_us"] - floor,
                tp["modelplex Classify (AsyncClient.classify)"]["req_per_s"],
                tp["echo floor (grpc.aio raw bytes)"]["req_per_s"],
            ]
        )
    headers = [
        "run (UTC)",
        "commit",
        "others' cores (max kept round)",
        "floor p50 µs",
        "stub p50 − floor µs",
        "Client p50 − floor µs",
        "req/s @8",
        "floor req/s @8",
    ]
    print("### bench_overhead runs\n")
    print(c.table(headers, rows + _median(rows, 3)))

    rows = []
    for d in runs["resnet18"]:
        seq, tp = d["sequential_us"], d["throughput"]
        direct = next(v for k, v in seq.items() if k.startswith("in-process direct") and "cold" not in k)["p50_us"]
        batched = [v for k, v in tp.items() if k != "max_batch_size 1"][0]
        layout = "2 models, 1 server" if "in-process runtime.classify (no gRPC)" in seq else "1 model per server"
        rows.append(
            [
                d["utc"],
                d["machine"].get("git_commit", "?")[:7],
                d["noise"].get("kept_rounds_max_other_cores", d["noise"]["other_cores"]),
                layout,
                direct / 1e3,
                seq["modelplex Classify (Client.classify)"]["p50_us"] / direct,
                seq["modelplex Classify (raw stub)"]["p50_us"] / direct,
                tp["max_batch_size 1"]["req_per_s"],
                f"{batched['req_per_s']:.1f} (b{d['args']['batch_size']})",
                tp["max_batch_size 1"]["req_per_s"] and batched["req_per_s"] / tp["max_batch_size 1"]["req_per_s"],
            ]
        )
    headers = [
        "run (UTC)",
        "commit",
        "others' cores (max kept round)",
        "layout",
        "direct p50 ms",
        "Client / direct",
        "stub / direct",
        "req/s b1",
        "req/s batching",
        "batching / b1",
    ]
    print("\n### bench_resnet18 runs\n")
    print(c.table(headers, rows + _median(rows, 4)))
    return 0


def _median(rows: list[list], first: int) -> list[list]:
    if len(rows) < 2:
        return []
    out: list[object] = ["median"] + [""] * (first - 1)
    for i in range(first, len(rows[0])):
        values = [r[i] for r in rows if isinstance(r[i], int | float)]
        out.append(statistics.median(values) if values else "")
    return [out]


if __name__ == "__main__":
    sys.exit(main())

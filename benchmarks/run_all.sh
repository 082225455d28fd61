#!/usr/bin/env bash
# Run every benchmark, each waiting (up to $WAIT s, default 300) for the machine's other
# processes to go idle and redoing rounds they disturb. Extra arguments (e.g. --quick) go to
# the benchmarks that take them. Results: benchmarks/results/*.json; tables on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WAIT=${WAIT:-300}
"$PY" benchmarks/bench_overhead.py --wait-quiet "$WAIT" --profile 5 "$@"
"$PY" benchmarks/bench_resnet18.py --wait-quiet "$WAIT" "$@"
"$PY" benchmarks/bench_breakdown.py --model trivial --wait-quiet "$WAIT" "$@"
"$PY" benchmarks/bench_breakdown.py --model resnet18 --wait-quiet "$WAIT" "$@"
"$PY" benchmarks/bench_big_tensor.py --wait-quiet "$WAIT" "$@"
MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=268435456 \
  "$PY" benchmarks/bench_big_tensor.py --wait-quiet "$WAIT" "$@"
"$PY" benchmarks/bench_omp_teams.py --wait-quiet "$WAIT"
"$PY" benchmarks/summarize_results.py

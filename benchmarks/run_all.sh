#!/usr/bin/env bash
# Run every benchmark, each waiting (up to $WAIT s, default 300) for the machine's other
# processes to go idle and redoing rounds they disturb. Extra arguments (e.g. --quick) go to
# every benchmark. Results: benchmarks/results/*.json; tables on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WAIT=${WAIT:-300}
for bench in bench_overhead bench_resnet18 bench_textgen bench_prepack bench_omp_teams; do
  "$PY" "benchmarks/$bench.py" --wait-quiet "$WAIT" "$@"
done

#!/usr/bin/env bash
# Install what is needed, then run the server (default: the built-in demo profile).
# Any arguments go to `modelplex serve`, e.g. --config modelplex.toml --port 50052.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/modelplex serve "$@"

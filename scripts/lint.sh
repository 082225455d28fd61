#!/usr/bin/env bash
# Lint and type-check: ruff (lint + format check) over the tree, mypy over the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy server/modelplex clients/python/src/modelplex_client plugins/vision/src plugins/text/src plugins/speech/src plugins/tts/src plugins/imagegen/src
scripts/buf.sh

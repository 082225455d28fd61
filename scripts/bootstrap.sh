#!/usr/bin/env bash
# Create .venv and install modelplex, its first-party plugins and the dev tools.
# Idempotent and quick when nothing changed (a stamp keyed on the dependency files).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.bootstrap-stamp"
want="$(cat requirements.txt pyproject.toml clients/python/pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
echo "bootstrap: installing into $VENV (first run takes a few minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip=("$VENV/bin/python" -m pip install --quiet)
"${pip[@]}" -r requirements.txt
editables=(-e clients/python -e ".[dev]")
for plugin in plugins/*/; do editables+=(-e "$plugin"); done
"${pip[@]}" --no-build-isolation "${editables[@]}"
echo "$want" > "$STAMP"

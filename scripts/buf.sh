#!/usr/bin/env bash
# Lint the protos with buf (STANDARD rules, protos/buf.yaml and each example's). Installs the buf CLI from npm
# into .tools/ on first use (pinned); needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF_VERSION=1.75.0
BUF=.tools/node_modules/.bin/buf
if [[ ! -x "$BUF" ]] || [[ "$("$BUF" --version)" != "$BUF_VERSION" ]]; then
  npm install --silent --no-audit --no-fund --prefix .tools "@bufbuild/buf@$BUF_VERSION" >&2
fi
# The server's protos, and each example distribution's own.
for dir in protos examples/*/protos; do
  (cd "$dir" && "$OLDPWD/$BUF" lint)
done

#!/usr/bin/env bash
# Start the embedded development chain (or any cli.py command: ./run.sh testnet --nodes 4).
# Idempotent: creates .venv only if missing and reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-run"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet -e .
    echo "$want" > "$stamp"
fi

if [ "$#" -eq 0 ]; then
    set -- node run
fi
exec .venv/bin/python cli.py "$@"

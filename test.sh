#!/usr/bin/env bash
# Run the whole test suite (extra arguments go to pytest: ./test.sh -k wallet).
# Idempotent: creates .venv only if missing and reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-test"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet -e '.[test]'
    echo "$want" > "$stamp"
fi

exec .venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# Build (or confirm cached) the Compose stack's local images; see
# sandbox/runtime/compose/images.py. Arguments pass through, e.g.
#   scripts/docker-images.sh --only kafka      scripts/docker-images.sh --env
# Python: $PYTHON, else the project's .venv (scripts/setup.sh makes it), else python3;
# it needs the project's dependencies.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python; } || PY=python3
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m sandbox.runtime.compose.images "$@"

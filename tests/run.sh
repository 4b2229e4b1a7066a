#!/usr/bin/env bash
# The project's test command: installs the test extras into .venv, then lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check server tests loadtests
.venv/bin/mypy
.venv/bin/pytest "$@"

#!/usr/bin/env bash
# The project's test command: installs the test extras into .venv (and Debian's ffmpeg, which the
# upload tests encode their media with, when it is missing and we may), then lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check server tests loadtests
.venv/bin/mypy
.venv/bin/pytest "$@"
